"""Which matmul precision is faster on this CPU, measured once per machine and cached.

CPU flags do not tell: oneDNN reports bf16 as supported on any AVX-512 CPU and then emulates it, several times
slower than fp32, while AMX runs bf16 several times faster. A short probe settles it; `openrecipe doctor` shows
the figures. Other jobs on the machine can only make a probe read low (they take cores from it), so each
probe records the load it ran under; one taken on a busy machine is taken again when the machine is quieter,
keeping the higher figure of each precision, since MFU is reported against these peaks.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

import torch

from openrecipe.utils.cpus import usable_cpus
from openrecipe.utils.fs import atomic_write_text, openrecipe_home

PROBE_VERSION = 1
SIZE = 768  # square matmul: big enough to reach the GEMM kernels' speed, small enough for a ~1 s probe
MIN_SECONDS = 0.25
BF16_MARGIN = 1.2  # bf16 must be clearly faster: a near tie keeps fp32, which is exact
BUSY_LOAD_PER_CPU = 0.5  # a 1-minute load average above this share of the CPUs: other jobs took cores


@dataclass(frozen=True)
class PrecisionProbe:
    fp32_gflops: float
    bf16_gflops: float
    threads: int
    machine: str
    load_per_cpu: float | None = None  # the 1-minute load average per CPU when measured (None: not recorded)

    @property
    def busy(self) -> bool:
        """Measured while other jobs kept the machine busy (or load not recorded): the figures may read low."""
        return self.load_per_cpu is None or self.load_per_cpu > BUSY_LOAD_PER_CPU

    @property
    def best(self) -> str:
        return "bf16" if self.bf16_gflops >= BF16_MARGIN * self.fp32_gflops else "fp32"

    def peak_gflops(self, precision: str) -> float:
        return self.bf16_gflops if precision == "bf16" else self.fp32_gflops


def cpu_model_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags_text() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return ""


def _machine_key(threads: int) -> str:
    text = f"{PROBE_VERSION}|{cpu_model_name()}|{_cpu_flags_text()}|{torch.__version__}|{threads}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def measure_matmul_gflops(dtype: torch.dtype, *, size: int = SIZE, min_seconds: float = MIN_SECONDS) -> float:
    """Throughput of repeated square matmuls in `dtype` (after one warm-up call)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    torch.mm(a, b)
    calls, start = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return 2 * size**3 * calls / elapsed / 1e9


def _cache_path(threads: int) -> Path:
    return openrecipe_home() / "machine" / f"precision-{_machine_key(threads)}.json"


def load_per_cpu() -> float | None:
    try:
        return round(os.getloadavg()[0] / max(len(usable_cpus()), 1), 2)
    except (OSError, AttributeError):
        return None


def _measure(threads: int) -> PrecisionProbe:
    return PrecisionProbe(
        fp32_gflops=round(measure_matmul_gflops(torch.float32), 1),
        bf16_gflops=round(measure_matmul_gflops(torch.bfloat16), 1),
        threads=threads,
        machine=cpu_model_name(),
        load_per_cpu=load_per_cpu(),
    )


@cache
def cpu_precision_probe() -> PrecisionProbe:
    """The cached measurement for this CPU, torch version and thread count; measured on first use, and again
    when the cached one was taken on a busy machine and the machine is quieter now (the higher figures kept)."""
    threads = torch.get_num_threads()
    path = _cache_path(threads)
    cached = None
    try:
        cached = PrecisionProbe(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        pass
    if cached is not None:
        now = load_per_cpu()
        quieter = now is not None and now <= BUSY_LOAD_PER_CPU and (cached.load_per_cpu or float("inf")) > now
        if not cached.busy or not quieter:
            return cached
    probe = _measure(threads)
    if cached is not None:
        probe = PrecisionProbe(
            fp32_gflops=max(probe.fp32_gflops, cached.fp32_gflops),
            bf16_gflops=max(probe.bf16_gflops, cached.bf16_gflops),
            threads=threads,
            machine=probe.machine,
            load_per_cpu=probe.load_per_cpu,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(asdict(probe), indent=2) + "\n")
    return probe
