"""Exports: GGUF files for llama.cpp/Ollama, and an Ollama Modelfile."""
