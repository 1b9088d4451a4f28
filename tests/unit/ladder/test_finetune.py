"""The fine-tuning ladder's budget: what its runs cost when they ran, reused or not."""

from __future__ import annotations

from openrecipe.ladder.finetune import _budget
from openrecipe.ladder.finetune_report import budget_line


def test_the_budget_counts_reused_runs_at_what_they_cost_when_they_ran():
    runs = [
        {"seconds": 60.0, "cpu_seconds": 100.0, "train_seconds": 40.0, "reused": True},
        {"seconds": 30.0, "cpu_seconds": 50.0, "train_seconds": 20.0},
    ]
    budget = _budget(runs, wall=35.0, cpu=55.0)
    assert budget["runs"] == 2 and budget["reused_runs"] == 1
    assert budget["run_seconds"] == 90.0 and budget["run_cpu_seconds"] == 150.0 and budget["train_seconds"] == 60.0
    assert budget["total_seconds"] == 35.0 and budget["cpu_seconds"] == 55.0
    line = budget_line(budget)
    assert "2 runs (1 reused from an earlier invocation): 90 s of runs (60 s of training, 150 CPU seconds)" in line
    assert "this invocation 35 s, 55 CPU seconds" in line


def test_runs_recorded_before_cpu_time_was_kept_leave_it_unknown():
    budget = _budget([{"seconds": 10.0, "train_seconds": None, "reused": True}], wall=1.0, cpu=1.0)
    assert budget["run_cpu_seconds"] is None and budget["train_seconds"] == 0
    assert "CPU seconds)" not in budget_line(budget)
