"""Engine builders: compile an ONNX model for one backend, heavy imports inside each module.

* :mod:`alexnet_deploy.engines.tensorrt`: a TensorRT plan (strongly typed build, TensorRT 10.x/11.x), and the
  build it shares with TensorRT-RTX.
* :mod:`alexnet_deploy.engines.tensorrt_rtx`: a TensorRT-RTX plan, built on any machine (no GPU), its
  compatibility checks and runner.
* :mod:`alexnet_deploy.engines.onnxruntime`: the ONNX Runtime engine (the deployable ONNX, or ORT's optimised
  graph) for the CPU, CUDA or TensorRT execution providers.
"""
