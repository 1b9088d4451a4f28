from pathlib import Path

import pytest

from openrecipe.utils import cpus


def topology(root: Path, siblings: dict[int, str]) -> Path:
    for cpu, listed in siblings.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(listed + "\n")
    return root


@pytest.mark.parametrize(
    ("usable", "siblings", "cores"),
    [
        ([0, 1], {0: "0", 1: "1"}, 2),  # two cores without SMT: both (the old half-the-CPUs rule gave 1)
        ([0, 1, 2, 3], {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}, 2),  # two cores, two threads each
        ([0, 1, 2, 3], {0: "0-1", 1: "0-1", 2: "2-3", 3: "2-3"}, 2),  # siblings listed as a range
        ([2], {2: "2-3"}, 1),  # a taskset share of one thread of a core
    ],
)
def test_physical_cores_count_smt_siblings_once(tmp_path, monkeypatch, usable, siblings, cores):
    monkeypatch.setattr(cpus, "usable_cpus", lambda: usable)
    assert cpus.physical_cores(topology(tmp_path, siblings)) == cores


def test_without_a_readable_topology_half_the_cpus(tmp_path, monkeypatch):
    monkeypatch.setattr(cpus, "usable_cpus", lambda: [0, 1, 2, 3, 4, 5])
    assert cpus.physical_cores(tmp_path) == 3
    monkeypatch.setattr(cpus, "usable_cpus", lambda: [0])
    assert cpus.physical_cores(tmp_path) == 1


def test_without_an_affinity_call_every_cpu_is_usable(monkeypatch):
    """macOS and Windows have no `sched_getaffinity`: all of `os.cpu_count()`."""
    monkeypatch.delattr(cpus.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 6)
    assert cpus.usable_cpus() == [0, 1, 2, 3, 4, 5]
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: None)
    assert cpus.usable_cpus() == [0]
