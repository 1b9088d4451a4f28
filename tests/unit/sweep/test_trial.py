"""A trial reads its metric from the run's report or metrics.jsonl, and reports eval losses for pruning."""

import json

import optuna
import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.sweep.trial import _should_prune, read_metric


def _run(tmp_path, rows):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = {"stages": [{"id": "sft", "metrics": {"best_eval_loss": 1.5, "steps": 4, "stop_reason": "x"}}]}
    (tmp_path / "report.json").write_text(json.dumps(report))
    return tmp_path


def test_metric_from_report_then_from_the_last_metrics_row(tmp_path):
    run = _run(tmp_path, [{"step": 2, "eval_loss": 2.0}, {"step": 4, "eval_loss": 1.7, "loss": 1.6}])
    assert read_metric(run, "sft", "best_eval_loss") == 1.5
    assert read_metric(run, "sft", "eval_loss") == 1.7
    with pytest.raises(OpenRecipeError, match="best_eval_loss"):
        read_metric(run, "sft", "accuracy")


def test_a_trial_worse_than_the_median_at_a_step_is_pruned(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1))
    for good in (1.0, 1.1):
        trial = study.ask()
        for step in (2, 4):
            trial.report(good, step)
        study.tell(trial, good)
    run = _run(tmp_path, [{"step": 2, "eval_loss": 3.0}, {"step": 4, "eval_loss": 2.9}])
    trial = study.ask()
    reported: set[int] = set()
    assert _should_prune(trial, run, "sft", reported)
    assert reported == {2}  # stopped at the first step past warmup where it is worse than the median
