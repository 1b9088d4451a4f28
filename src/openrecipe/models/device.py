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


@cache
def cpu_has_fast_bf16() -> bool:
    """True when bf16 matmuls measured clearly faster than fp32 on this CPU (probe cached per machine)."""
    from openrecipe.models.precision import cpu_precision_probe

    return cpu_precision_probe().best == "bf16"


def fast_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_has_fast_bf16()
    return False


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """`auto` for inference: bf16 on GPUs with fast bf16, fp32 on CPU.

    CPU decoding is memory-bound, so bf16 is not faster there and flips near-tie tokens; training still uses
    bf16 autocast where the probe measured bf16 matmuls faster.
    """
    if requested != "auto":
        if requested not in DTYPES:
            from openrecipe.errors import OpenRecipeError

            raise OpenRecipeError(f"unknown dtype {requested!r}", fix=f"use one of: auto, {', '.join(DTYPES)}")
        return DTYPES[requested]
    return torch.bfloat16 if device.type == "cuda" and fast_bf16(device) else torch.float32
