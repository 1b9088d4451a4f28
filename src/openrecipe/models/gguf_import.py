"""Turn a GGUF file into a normal Hugging Face safetensors folder (dequantized)."""

from __future__ import annotations

from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.models.gguf_header import check_gguf

__all__ = ["check_gguf", "convert_gguf_to_hf", "load_gguf"]


def load_gguf(path: Path, *, dtype: object | None = None):
    """Load a GGUF as (model, tokenizer) with transformers, dequantized."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_gguf(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=dtype)
    except (ValueError, KeyError, RuntimeError) as error:
        raise OpenRecipeError(
            f"transformers cannot load {path}: {error}",
            fix="transformers supports GGUF files of common architectures (llama, mistral, qwen2, ...)",
        ) from None
    return model, tokenizer


def convert_gguf_to_hf(path: Path, out_dir: Path) -> None:
    model, tokenizer = load_gguf(path)
    # A GGUF-loaded model refuses to save while it still carries the GGUF quantization config.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
