"""Turn a GGUF file into a normal Hugging Face safetensors folder (dequantized)."""

from __future__ import annotations

from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.models.gguf_header import check_gguf

__all__ = ["check_gguf", "convert_gguf_to_hf", "dequantized_folder", "load_gguf"]


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
    # The weights are dequantized on load; without the GGUF quantization config the model saves, trains
    # and merges like any other.
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    return model, tokenizer


def dequantized_folder(path: Path) -> Path:
    """The GGUF as a safetensors folder, converted once per file content into the openrecipe cache:
    transformers rebuilds the tokenizer from GGUF metadata on every load (tens of seconds for a large
    vocabulary), a folder loads in a fraction of a second."""
    import hashlib

    from openrecipe.utils.fs import atomic_directory, openrecipe_home

    check_gguf(path)
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    target = openrecipe_home() / "gguf" / digest.hexdigest()[:24]
    if not (target / "config.json").is_file():
        import contextlib
        import io

        # transformers draws a per-tensor progress bar on stderr while it dequantizes; it is not the user's.
        with atomic_directory(target, overwrite=True) as tmp, contextlib.redirect_stderr(io.StringIO()):
            convert_gguf_to_hf(path, tmp)
    return target


def convert_gguf_to_hf(path: Path, out_dir: Path) -> None:
    model, tokenizer = load_gguf(path)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
