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
