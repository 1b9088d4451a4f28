"""Export a model to GGUF files of several types, verified by reading each one back."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_writer import NUMPY_TYPES, write_gguf

LLAMA_CPP_TYPES = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "q4_1": 3}


def llama_cpp_quantize(source: Path, out: Path, qtype: str) -> None:
    try:
        import llama_cpp
    except ImportError:
        raise OpenRecipeError(
            f"GGUF type {qtype} needs llama.cpp's quantizer (llama-cpp-python)",
            fix="pip install 'openrecipe[llamacpp]' (make install builds it), or use q4_0",
        ) from None
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = LLAMA_CPP_TYPES[qtype]
    tmp = out.with_name(f".{out.name}.tmp")
    code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if code != 0:
        raise OpenRecipeError(f"llama.cpp failed to quantize to {qtype} (code {code})")
    tmp.replace(out)


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


def export_gguf(folder: Path, out_dir: Path, types: list[str], *, name: str) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Any] = {}
    for qtype in types:
        if qtype not in NUMPY_TYPES and qtype not in LLAMA_CPP_TYPES:
            raise OpenRecipeError(
                f"unknown GGUF type {qtype!r}", fix=f"use: {', '.join([*NUMPY_TYPES, *LLAMA_CPP_TYPES])}"
            )
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        f16: Path | None = None
        for qtype in types:
            target = out_dir / f"{name}-{qtype}.gguf"
            if qtype in NUMPY_TYPES:
                write_gguf(folder, target, qtype, name=name)
            else:
                if f16 is None:
                    f16 = (
                        out_dir / f"{name}-f16.gguf"
                        if "f16" in types and (out_dir / f"{name}-f16.gguf").exists()
                        else write_gguf(folder, Path(tmp) / "f16.gguf", "f16", name=name)
                    )
                llama_cpp_quantize(f16, target, qtype)
            files[qtype] = {"path": str(target), "size_bytes": target.stat().st_size, **read_back(target)}
    (out_dir / "gguf.json").write_text(json.dumps(files, indent=1))
    return files
