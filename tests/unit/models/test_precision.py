"""The training precision is chosen by measuring both, once per machine."""

import json

import torch

from openrecipe.models import precision
from openrecipe.models.precision import PrecisionProbe, cpu_precision_probe, measure_matmul_gflops


def test_bf16_must_be_clearly_faster_to_be_chosen():
    assert PrecisionProbe(100.0, 119.0, 2, "cpu").best == "fp32"
    assert PrecisionProbe(100.0, 120.0, 2, "cpu").best == "bf16"
    assert PrecisionProbe(100.0, 40.0, 2, "cpu").peak_gflops("fp32") == 100.0


def test_measurement_is_positive_for_both_precisions():
    assert measure_matmul_gflops(torch.float32, size=64, min_seconds=0.01) > 0
    assert measure_matmul_gflops(torch.bfloat16, size=64, min_seconds=0.01) > 0


def test_probe_is_measured_once_and_cached_per_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path))
    calls = []

    def fake_measure(dtype, **_):
        calls.append(dtype)
        return 50.0 if dtype == torch.float32 else 200.0

    monkeypatch.setattr(precision, "measure_matmul_gflops", fake_measure)
    cpu_precision_probe.cache_clear()
    try:
        first = cpu_precision_probe()
        cached = list((tmp_path / "machine").glob("precision-*.json"))
        assert first.best == "bf16" and len(calls) == 2 and len(cached) == 1
        assert json.loads(cached[0].read_text())["bf16_gflops"] == 200.0
        cpu_precision_probe.cache_clear()
        assert cpu_precision_probe() == first and len(calls) == 2  # read back, not measured again
    finally:
        cpu_precision_probe.cache_clear()


def test_a_probe_taken_on_a_busy_machine_is_taken_again_when_it_is_quieter(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path))
    readings = {torch.float32: 20.0, torch.bfloat16: 1.0}
    calls = []

    def fake_measure(dtype, **_):
        calls.append(dtype)
        return readings[dtype]

    load = {"now": 3.0}
    monkeypatch.setattr(precision, "measure_matmul_gflops", fake_measure)
    monkeypatch.setattr(precision, "load_per_cpu", lambda: load["now"])
    cpu_precision_probe.cache_clear()
    try:
        busy = cpu_precision_probe()
        assert busy.busy and busy.fp32_gflops == 20.0 and len(calls) == 2
        cpu_precision_probe.cache_clear()
        assert cpu_precision_probe() == busy and len(calls) == 2  # still busy: the cached figures stand
        load["now"], readings[torch.float32] = 0.2, 180.0
        cpu_precision_probe.cache_clear()
        quiet = cpu_precision_probe()
        assert len(calls) == 4 and quiet.fp32_gflops == 180.0 and quiet.bf16_gflops == 1.0 and not quiet.busy
        readings[torch.float32] = 90.0  # a later, slower reading would not replace it: it is not taken at all
        load["now"] = 0.1
        cpu_precision_probe.cache_clear()
        assert cpu_precision_probe() == quiet and len(calls) == 4
    finally:
        cpu_precision_probe.cache_clear()


def test_a_cached_probe_from_before_loads_were_recorded_is_refreshed_once_keeping_the_higher_figures(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path))
    path = precision._cache_path(torch.get_num_threads())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fp32_gflops": 19.2, "bf16_gflops": 5.0, "threads": 2, "machine": "cpu"}))
    monkeypatch.setattr(precision, "measure_matmul_gflops", lambda dtype, **_: 180.0 if dtype == torch.float32 else 1.1)
    monkeypatch.setattr(precision, "load_per_cpu", lambda: 0.3)
    cpu_precision_probe.cache_clear()
    try:
        probe = cpu_precision_probe()
        assert (probe.fp32_gflops, probe.bf16_gflops, probe.load_per_cpu) == (180.0, 5.0, 0.3)
        assert json.loads(path.read_text())["fp32_gflops"] == 180.0
    finally:
        cpu_precision_probe.cache_clear()
