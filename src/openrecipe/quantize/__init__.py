"""Weight quantization inside transformers (torchao), saved as safetensors that reload anywhere."""
