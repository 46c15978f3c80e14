"""The TensorRT backend (10.x/11.x): :mod:`.build` compiles an ONNX into a plan, :mod:`.runner` runs it and holds
the compatibility rule that is checked before TensorRT sees a plan's bytes."""
