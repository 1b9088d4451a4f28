"""Export a model to GGUF files of several types, verified by reading each one back."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_writer import NUMPY_TYPES, write_gguf
from openrecipe.export.llama_quantize import LLAMA_CPP_TYPES, quantize_gguf
from openrecipe.utils.fs import atomic_write_json


def read_back(path: Path) -> dict[str, Any]:
    """Open with the gguf reader: tensor count, types, and that the chat template is embedded."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    fields = reader.fields

    def text(key: str) -> str | None:
        field = fields.get(key)
        return bytes(field.parts[field.data[0]]).decode() if field is not None else None

    types: dict[str, int] = {}
    for tensor in reader.tensors:
        types[tensor.tensor_type.name] = types.get(tensor.tensor_type.name, 0) + 1
    template = text("tokenizer.chat_template")
    if not template:
        raise OpenRecipeError(f"{path.name} has no chat template after export")
    return {
        "architecture": text("general.architecture"),
        "tensors": len(reader.tensors),
        "tensor_types": types,
        "has_chat_template": True,
        "tokens": len(fields["tokenizer.ggml.tokens"].data),
    }


def export_gguf(
    folder: Path,
    out_dir: Path,
    types: list[str],
    *,
    name: str,
    calibration: list[str] | None = None,
) -> dict[str, Any]:
    """Write one GGUF per type; llama.cpp types use an importance matrix when calibration text is given."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for qtype in types:
        if qtype not in NUMPY_TYPES and qtype not in LLAMA_CPP_TYPES:
            raise OpenRecipeError(
                f"unknown GGUF type {qtype!r}", fix=f"use: {', '.join([*NUMPY_TYPES, *LLAMA_CPP_TYPES])}"
            )
    files: dict[str, Any] = {}
    imatrix, calibration_tokens = None, 0
    if calibration and any(qtype in LLAMA_CPP_TYPES for qtype in types):
        from openrecipe.export.importance import importance_matrix

        imatrix, calibration_tokens = importance_matrix(folder, calibration)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        f16: Path | None = None
        for qtype in types:
            target = out_dir / f"{name}-{qtype}.gguf"
            quantizer: dict[str, Any] = {}
            if qtype in NUMPY_TYPES:
                write_gguf(folder, target, qtype, name=name)
            else:
                if f16 is None:  # reuse the f16 file only if this call wrote it, never a stale one
                    f16 = (
                        Path(files["f16"]["path"])
                        if "f16" in files
                        else write_gguf(folder, Path(tmp) / "f16.gguf", "f16", name=name)
                    )
                quantizer = quantize_gguf(f16, target, qtype, imatrix=imatrix)
                quantizer["calibration_tokens"] = calibration_tokens
            files[qtype] = {"path": str(target), "size_bytes": target.stat().st_size, **read_back(target), **quantizer}
    atomic_write_json(out_dir / "gguf.json", files)
    return files
