"""Turn a GGUF file into a normal Hugging Face safetensors folder (dequantized)."""

from __future__ import annotations

from pathlib import Path

from openrecipe.errors import OpenRecipeError

GGUF_MAGIC = b"GGUF"


def check_gguf(path: Path) -> None:
    """Fail with a clear message on files that are not readable GGUF, before transformers sees them."""
    if not path.is_file():
        raise OpenRecipeError(f"GGUF file not found: {path}", fix="check the path")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise OpenRecipeError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)",
            fix="pass a .gguf model file, or an HF model folder",
        )
    try:
        from gguf import GGUFReader

        GGUFReader(str(path))
    except Exception as error:  # the reader raises many types on truncated/corrupt files
        raise OpenRecipeError(
            f"{path} is a corrupt or truncated GGUF file ({type(error).__name__}: {error})",
            fix="re-download or re-export it",
        ) from None


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
