"""llama.cpp's quantizer (through llama-cpp-python), optionally with an importance matrix.

K-quants pack 256 columns per block; rows whose length is not a multiple of 256 (576 on the default
model: every matrix but ffn_down) fall back to 32-column types, Q4_K → Q5_0. That choice is kept on
purpose. Picking Q4_1 instead by measured weight error looked better on the base model (+0.7% vs +4.2%
perplexity) because the default model was distributed as Q4_1 — but on a fine-tune of it, Q4_1 rounds
the small LoRA deltas straight back onto the base model's grid: the exported Nova model fell from 100%
to 46% on held-out identity questions. Q5_0's different grid keeps the deltas as rounding noise.
Measured with llama.cpp on the project's held-out text (data/general/heldout.txt, BF16 perplexity 32.59),
default model: q4_k_m as llama.cpp picks +8.4%, with an importance matrix (replay corpus + manuals)
+4.4%, at 0.39x the BF16 size.
"""

from __future__ import annotations

import ctypes
import logging
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.errors import OpenRecipeError
from openrecipe.export.gguf_types import GGUF_TYPES, gguf_type, quantizer_types

LLAMA_CPP_TYPES = {name: GGUF_TYPES.get(name).llama_ftype for name in quantizer_types()}


def _llama_cpp(qtype: str):
    try:
        from openrecipe.models.llamacpp import load_llama_cpp

        return load_llama_cpp()
    except ImportError:
        raise OpenRecipeError(
            f"GGUF type {qtype} needs llama.cpp's quantizer (llama-cpp-python)",
            fix="pip install 'openrecipe[llamacpp]' (make install builds it), or export f16/q8_0",
        ) from None


def quantize_gguf(
    source: Path, out: Path, qtype: str, *, imatrix: dict[str, np.ndarray] | None = None
) -> dict[str, Any]:
    """Quantize an F16/BF16/F32 GGUF to `qtype` (atomically); returns how many tensors had importance data."""
    entry = gguf_type(qtype)
    llama_cpp = _llama_cpp(qtype)
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
