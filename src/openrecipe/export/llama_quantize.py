"""llama.cpp's quantizer (through llama-cpp-python), optionally with an importance matrix.

K-quants pack 256 columns per block; rows of other lengths fall back to 32-column types as llama.cpp
picks them (Q4_K → Q5_0). That choice is kept on purpose: Q4_1 shares the grid many base models are
distributed on and rounds a fine-tune's small deltas straight back onto it, undoing the fine-tune
(README, "Merge, quantize, export", has the measurement).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import re
from collections import Counter
from collections.abc import Iterator
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
    with _llama_log_to(out.parent / "native.log") as chatter:
        code = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if code != 0:
        tmp.unlink(missing_ok=True)
        raise OpenRecipeError(
            f"llama.cpp failed to quantize to {qtype} (code {code})", fix=f"see {out.parent / 'native.log'}"
        )
    tmp.replace(out)
    return {"imatrix_tensors": len(imatrix or {}), **fallback_summary(chatter.getvalue())}


@contextlib.contextmanager
def _llama_log_to(log_path: Path) -> Iterator[io.StringIO]:
    """llama.cpp prints a line per tensor (and one per fallback): all of it goes to the log file, and is
    kept for `fallback_summary`, never to the terminal."""
    from openrecipe.utils.native_output import native_output_to

    log = logging.getLogger("llama-cpp-python")
    level = log.level
    log.setLevel(logging.DEBUG)
    buffer = io.StringIO()
    try:
        with native_output_to(log_path), contextlib.redirect_stderr(buffer):
            yield buffer
    finally:
        log.setLevel(level)
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(buffer.getvalue())


# One line per tensor that got another type; llama.cpp has worded it two ways:
#   "warning: blk.0.attn_k.weight - ncols 64 not divisible by 256 (required for type q4_K) -> falling back to q5_0"
#   "tensor cols 64 x 64 are not divisible by 256, required for q4_K - using fallback quantization q5_0"
_FALLBACK = re.compile(
    r"not divisible by (\d+)(?: \(|, )required for (?:type )?(\w+)\)? ?"
    r"(?:-> falling back to|- using fallback quantization) (\w+)"
)
_TOTAL = re.compile(r"(\d+) of (\d+) tensor\(s\) required fallback")


def fallback_summary(log: str) -> dict[str, Any]:
    """How many tensors llama.cpp gave a fallback type, out of how many, and why (from its log)."""
    found = _FALLBACK.findall(" ".join(log.split()))
    summary = _TOTAL.search(log)
    return {
        "quantized_tensors": int(summary.group(2)) if summary else 0,
        "fallback_tensors": int(summary.group(1)) if summary else len(found),
        "fallback_types": dict(Counter(f"{wanted}->{used}" for _, wanted, used in found)),
        "fallback_divisors": sorted({int(divisor) for divisor, _, _ in found}),
    }


def fallback_line(info: dict[str, Any]) -> str | None:
    """One terminal line for a quantization's fallbacks, or None when there were none."""
    count = info.get("fallback_tensors", 0)
    if not count:
        return None
    why = " or ".join(str(d) for d in info.get("fallback_divisors", [])) or "the block size"
    used = ", ".join(sorted({pair.split("->")[1] for pair in info.get("fallback_types", {})}))
    of = f" of {info['quantized_tensors']}" if info.get("quantized_tensors") else ""
    return f"{count}{of} tensors used a fallback type{f', {used}' if used else ''} (rows not divisible by {why})"
