"""llama.cpp's quantizer (through llama-cpp-python), optionally with an importance matrix.

K-quants pack 256 columns per block; rows of other lengths fall back to 32-column types as llama.cpp
picks them (Q4_K → Q5_0). That choice is kept on purpose: Q4_1 shares the grid many base models are
distributed on and rounds a fine-tune's small deltas straight back onto it, undoing the fine-tune
(README, "Merge, quantize, export", has the measurement).
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_types import GGUF_TYPES, gguf_type, quantizer_types
from openrecipe.models.llamacpp import load_llama_cpp

LLAMA_CPP_TYPES = {name: GGUF_TYPES.get(name).llama_ftype for name in quantizer_types()}


def quantize_gguf(
    source: Path, out: Path, qtype: str, *, imatrix: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Quantize an F16/BF16/F32 GGUF to `qtype` (atomically); returns how many tensors had importance data."""
    entry = gguf_type(qtype)
    llama_cpp = load_llama_cpp()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, entry.llama_ftype)
    keep_alive: list[Any] = []  # the C side reads these buffers during the call
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for slot, (name, values) in zip(entries, imatrix.items(), strict=False):
            buffer = np.ascontiguousarray(values, dtype=np.float32)
            keep_alive.append(buffer)
            slot.name = name.encode()
            slot.data = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            slot.size = buffer.size
        entries[len(imatrix)].name = None  # the list ends with a null name
        keep_alive.append(entries)
        params.imatrix = ctypes.cast(entries, type(params.imatrix))
    tmp = out.with_name(f".{out.name}.tmp")
    log = logging.getLogger("llama-cpp-python")  # llama.cpp prints every tensor it quantizes otherwise
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    finally:
        log.setLevel(level)
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise OpenRecipeError(f"llama.cpp failed to quantize to {qtype} (code {code})")
    tmp.replace(out)
    return {"imatrix_tensors": len(imatrix or {})}
