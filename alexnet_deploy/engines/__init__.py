"""Engine builders: compile an ONNX model for one backend (TensorRT plans here; heavy imports stay inside)."""
