"""Deploy: ONNX export (fp32 and int8) with parity and speed checks."""
