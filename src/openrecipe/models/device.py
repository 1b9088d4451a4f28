"""Pick the device and dtype a model should run in."""

from __future__ import annotations

from functools import cache
from typing import Literal

import torch

DTypeName = Literal["auto", "float32", "bfloat16", "float16"]
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matmul units (AMX-BF16 or AVX512-BF16).

    oneDNN reports bf16 "supported" on any AVX-512 CPU, but without these units it emulates bf16 and runs
    ~7x *slower* than fp32 (measured: 0.04 vs 0.28 TFLOP/s); with AMX it runs ~6x faster (1.9-2.3 TFLOP/s).
    """
    flags = _cpu_flags()
    if flags:
        return bool({"amx_bf16", "avx512_bf16"} & flags)
    try:  # not Linux: trust oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto` for inference: bf16 on GPUs with fast bf16, fp32 on CPU.

    On CPU, decoding is memory-bound: bf16 was not faster at batch 1 on an AMX machine (26.5 vs 29 tok/s
    for the 135M default model) and flips near-tie tokens (the France answer's first token is a 0.152 vs
    0.140 tie). Training still uses bf16 autocast on such CPUs, where matmuls run ~6x faster.
    """
    if requested != "auto":
        if requested not in DTYPES:
            from openrecipe.errors import OpenRecipeError

            raise OpenRecipeError(f"unknown dtype {requested!r}", fix=f"use one of: auto, {', '.join(DTYPES)}")
        return DTYPES[requested]
    return torch.bfloat16 if device.type == "cuda" and fast_bf16(device) else torch.float32
