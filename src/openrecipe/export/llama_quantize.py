"""llama.cpp's quantizer (through llama-cpp-python) with an importance matrix and measured fallbacks.

K-quants pack 256 columns per block. Rows whose length is not a multiple of 256 (576 on the default model:
every attention and gate/up matrix) cannot use them, and llama.cpp falls back: Q4_K → Q5_0, a symmetric
5.5-bit type. Q4_1 — Q4_K's own asymmetric 4-bit scheme at 32-column blocks, 5.0 bits — is sometimes the
better fit. So for each tensor that fell back, both are tried in numpy (the `gguf` package's reference
quantizers), the error is weighted by the importance matrix when there is one, and the smaller error wins
(ties go to the smaller type); the file is then quantized again with those choices as per-tensor overrides.
Weights that are roughly Gaussian keep llama.cpp's Q5_0 (about 3x lower error); weights that already sit on
a 4-bit asymmetric grid — the default model was distributed as Q4_1 — keep Q4_1. Measured with llama.cpp
on the project's held-out text (data/general/heldout.txt, BF16 perplexity 32.59), default model:
q4_k_m as llama.cpp picks +8.4%; with the importance matrix +4.2%; with measured fallbacks +3.0%; both
+0.7%, at 0.37x the BF16 size. `measure_fallbacks=False` keeps llama.cpp's choice.
"""

from __future__ import annotations

import ctypes
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from openrecipe.errors import OpenRecipeError

LLAMA_CPP_TYPES = {
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q5_0": "LLAMA_FTYPE_MOSTLY_Q5_0",
    "q5_1": "LLAMA_FTYPE_MOSTLY_Q5_1",
    "q3_k_m": "LLAMA_FTYPE_MOSTLY_Q3_K_M",
    "q4_k_s": "LLAMA_FTYPE_MOSTLY_Q4_K_S",
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
K_BLOCK = 256
# llama.cpp's fallback for a K-quant → the alternatives worth measuring against it (no larger than it).
FALLBACK_ALTERNATIVES = {"Q5_0": ("Q4_1",)}


def _llama_cpp(qtype: str):
    try:
        import llama_cpp
    except ImportError:
        raise OpenRecipeError(
            f"GGUF type {qtype} needs llama.cpp's quantizer (llama-cpp-python)",
            fix="pip install 'openrecipe[llamacpp]' (make install builds it), or use q4_0",
        ) from None
    return llama_cpp


def _run(source: Path, out: Path, qtype: str, imatrix: dict[str, np.ndarray] | None, overrides: dict[str, str]) -> None:
    import gguf

    llama_cpp = _llama_cpp(qtype)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_CPP_TYPES[qtype])
    keep_alive: list[Any] = []  # the C side reads these buffers during the call
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for slot, (name, values) in zip(entries, imatrix.items(), strict=False):
            buffer = np.ascontiguousarray(values, dtype=np.float32)
            keep_alive.append(buffer)
            slot.name = name.encode()
            slot.data = buffer.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            slot.size = buffer.size
        entries[len(imatrix)].name = None
        keep_alive.append(entries)
        params.imatrix = ctypes.cast(entries, type(params.imatrix))
    if overrides:
        table = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
        for slot, (name, type_name) in zip(table, overrides.items(), strict=False):
            slot.pattern = f"^{re.escape(name)}$".encode()
            slot.type = int(gguf.GGMLQuantizationType[type_name])
        table[len(overrides)].pattern = None
        keep_alive.append(table)
        params.tt_overrides = ctypes.cast(table, type(params.tt_overrides))
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


def _weighted_error(weights: np.ndarray, type_name: str, importance: np.ndarray | None) -> float:
    from gguf import GGMLQuantizationType, quants

    qtype = GGMLQuantizationType[type_name]
    error = (weights - quants.dequantize(quants.quantize(weights, qtype), qtype)) ** 2
    return float((error * importance[None, :]).sum() if importance is not None else error.sum())


def measured_fallbacks(source: Path, first_pass: Path, imatrix: dict[str, np.ndarray] | None) -> dict[str, dict]:
    """For tensors llama.cpp had to demote from a K-quant, the alternative with the smallest error."""
    from gguf import GGUFReader

    chosen_types = {t.name: t.tensor_type.name for t in GGUFReader(str(first_pass)).tensors}
    choices: dict[str, dict] = {}
    for tensor in GGUFReader(str(source)).tensors:
        fallback = chosen_types.get(tensor.name)
        columns = int(tensor.shape[0])
        if fallback not in FALLBACK_ALTERNATIVES or columns % K_BLOCK == 0 or tensor.data.ndim != 2:
            continue
        weights = np.asarray(tensor.data, dtype=np.float32)
        importance = (imatrix or {}).get(tensor.name)
        errors = {
            name: _weighted_error(weights, name, importance) for name in (fallback, *FALLBACK_ALTERNATIVES[fallback])
        }
        best = min(errors, key=lambda name: (errors[name], name == fallback))  # ties: the smaller type
        choices[tensor.name] = {"llama_cpp": fallback, "chosen": best, "errors": errors}
    return choices


def quantize_gguf(
    source: Path,
    out: Path,
    qtype: str,
    *,
    imatrix: dict[str, np.ndarray] | None = None,
    measure_fallbacks: bool = True,
) -> dict[str, Any]:
    """Quantize an F16/BF16/F32 GGUF to `qtype`; returns what was decided (fallbacks, importance matrix)."""
    if qtype not in LLAMA_CPP_TYPES:
        raise OpenRecipeError(f"unknown llama.cpp type {qtype!r}", fix=f"use: {', '.join(LLAMA_CPP_TYPES)}")
    _run(source, out, qtype, imatrix, {})
    decisions: dict[str, Any] = {"imatrix_tensors": len(imatrix or {}), "fallbacks": {}}
    if "_k" not in qtype or not measure_fallbacks:
        return decisions
    choices = measured_fallbacks(source, out, imatrix)
    overrides = {name: row["chosen"] for name, row in choices.items() if row["chosen"] != row["llama_cpp"]}
    if overrides:
        _run(source, out, qtype, imatrix, overrides)
    counts: dict[str, int] = {}
    for row in choices.values():
        key = f"{row['llama_cpp']}->{row['chosen']}" if row["chosen"] != row["llama_cpp"] else row["chosen"]
        counts[key] = counts.get(key, 0) + 1
    decisions["fallbacks"] = counts
    return decisions
