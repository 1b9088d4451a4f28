"""How many CPU cores this process may run on, counted the way llama.cpp counts its default threads."""

from __future__ import annotations

import os
from pathlib import Path

SYSFS_CPUS = Path("/sys/devices/system/cpu")


def usable_cpus() -> list[int]:
    """Logical CPUs in this process's affinity set (a container's or `taskset`'s share, not the host's)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return sorted(affinity(0)) if affinity else list(range(os.cpu_count() or 1))


def physical_cores(sysfs: Path = SYSFS_CPUS) -> int:
    """Physical cores among the usable CPUs: SMT siblings (hyper-threads) count once, as llama.cpp's own
    default thread count does. A thread per logical CPU gains nothing on a core whose sibling is busy with the
    same matmul, while a core without a sibling left idle is half the machine on a 2-core box. Where the
    topology cannot be read, half the logical CPUs (llama-cpp-python's rule, which assumes two per core)."""
    cpus = usable_cpus()
    cores = set()
    for cpu in cpus:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return max(len(cpus) // 2, 1)
    return max(len(cores), 1)
