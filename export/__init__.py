"""Export: ONNX, FP16 and TensorRT engine building (installed as scgan_rt.export)."""
