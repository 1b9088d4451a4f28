"""Any model reference as a plain Hugging Face folder, for tools that read only folders (mergekit,
torchao quantization, the GGUF converter)."""

from __future__ import annotations

from pathlib import Path

from openrecipe.models.refs import ModelRef, resolve_model_ref


def materialize(reference: ModelRef | str, workdir: Path) -> Path:
    """A plain HF folder for any reference: adapters are merged into their base with PEFT, GGUF is
    dequantized; a folder that already is one is returned as it is (with the reference's chat template,
    when it names one, written into a linked copy)."""
    from openrecipe.models.loading import load_model, model_source_path

    ref = resolve_model_ref(reference)
    if ref.kind in ("default", "hf_folder"):
        folder = model_source_path(ref)
        assert folder is not None
        return folder if ref.template is None else _with_template(ref, folder, workdir)
    loaded = load_model(ref, device="cpu", dtype="float32", merge_adapter=True)
    if getattr(loaded.model, "hf_quantizer", None) is not None:
        loaded.model.hf_quantizer.remove_quantization_config(loaded.model)
    target = _new_folder(workdir)
    loaded.model.save_pretrained(str(target))
    loaded.tokenizer.save_pretrained(str(target))
    return target


def _new_folder(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    return workdir / f"model-{len(list(workdir.iterdir()))}"


def _with_template(ref: ModelRef, folder: Path, workdir: Path) -> Path:
    """The folder's files hard-linked (copied across file systems) beside its tokenizer saved with the
    template: the weights are not rewritten, and the source folder is not touched."""
    import os
    import shutil

    from openrecipe.models.loading import load_tokenizer

    target = _new_folder(workdir)
    target.mkdir()
    load_tokenizer(ref).save_pretrained(str(target))
    for source in folder.rglob("*"):
        destination = target / source.relative_to(folder)
        if source.is_dir() or destination.exists() or source.name == "chat_template.json":
            continue
        destination.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, destination)
        except OSError:
            shutil.copy2(source, destination)
    return target
