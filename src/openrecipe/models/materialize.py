"""Any model reference as a plain Hugging Face folder, for tools that read only folders (mergekit,
torchao quantization, the GGUF converter)."""

from __future__ import annotations

from pathlib import Path

from openrecipe.models.refs import ModelRef, resolve_model_ref


def materialize(reference: ModelRef | str, workdir: Path) -> Path:
    """A plain HF folder for any reference: adapters are merged into their base with PEFT, GGUF is
    dequantized; a folder that already is one is returned as it is."""
    from openrecipe.models.loading import load_model, model_source_path

    ref = resolve_model_ref(reference)
    if ref.kind in ("default", "hf_folder"):
        return model_source_path(ref)  # type: ignore[return-value]
    loaded = load_model(ref, device="cpu", dtype="float32", merge_adapter=True)
    if getattr(loaded.model, "hf_quantizer", None) is not None:
        loaded.model.hf_quantizer.remove_quantization_config(loaded.model)
    workdir.mkdir(parents=True, exist_ok=True)
    target = workdir / f"model-{len(list(workdir.iterdir()))}"
    loaded.model.save_pretrained(str(target))
    loaded.tokenizer.save_pretrained(str(target))
    return target
