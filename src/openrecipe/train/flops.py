"""Training FLOPs: the device's measured matmul peak (measured once, cached) and FLOPs per token, for
MFU estimates."""

from __future__ import annotations

import json
import platform
import time

import torch

from openrecipe.utils.fs import atomic_write_json, openrecipe_home


def measured_peak_flops(device: torch.device, dtype: torch.dtype = torch.bfloat16) -> float:
    """FLOP/s of large matmuls in `dtype`: on CPU the precision probe's figure (what `openrecipe doctor`
    shows and what chose the precision), elsewhere measured here once and cached."""
    if device.type == "cpu":
        from openrecipe.models.precision import cpu_precision_probe

        probe = cpu_precision_probe()
        return 1e9 * (probe.bf16_gflops if dtype == torch.bfloat16 else probe.fp32_gflops)
    key = f"{platform.node()}|{platform.processor()}|{device.type}|{dtype}|{torch.__version__}"
    cache = openrecipe_home() / "peak_flops.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, json.JSONDecodeError):
        known = {}
    if key in known:
        return float(known[key])
    size = 2048
    # Its own generator: measuring must not move the training run's random stream.
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    for _ in range(2):
        a @ b
    repeats = 6
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = 2 * size**3 * repeats / seconds
    known[key] = peak
    atomic_write_json(cache, known)
    return peak


def flops_per_token(num_params: int, num_layers: int, seq_len: int, hidden: int, full: bool) -> float:
    """≈6N (full) or 4N (LoRA: no weight gradients for the frozen base) plus attention 12·L·s·d."""
    return (6 if full else 4) * num_params + 12 * num_layers * seq_len * hidden
