"""Export: quantization, compression, the packed code and the artifact's size."""
