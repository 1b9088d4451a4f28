"""One trial: the recipe run once per seed, each a normal run folder (`openrecipe run` in a child process,
so a crash or a pruned trial frees its memory and a killed worker takes its run with it)."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError

POLL_SECONDS = 0.5


@dataclass
class TrialPlan:
    """What a worker needs to run a trial: the recipe, fixed overrides and where runs go."""

    recipe: Path
    overrides: list[str]
    sweep_dir: Path
    stage: str | None
    metric: str
    seeds: int
    base_seed: int
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass
class SeedRun:
    seed: int
    run_dir: Path
    value: float
    wall_seconds: float
    run_seconds: float
    train_seconds: float


class Pruned(Exception):
    """The trial's intermediate eval loss was worse than the others' at the same step."""


def _die_with_parent() -> None:
    """Linux: the child run is killed when its worker dies (kill -9 included), so no orphan keeps training."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _metric_rows(run_dir: Path, stage: str | None) -> list[dict[str, Any]]:
    paths = [run_dir / stage / "metrics.jsonl"] if stage else sorted(run_dir.glob("*/metrics.jsonl"))
    rows: list[dict[str, Any]] = []
    for path in paths:
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:  # a line being written right now
                    continue
    return rows


def read_metric(run_dir: Path, stage: str | None, metric: str) -> float:
    """The stage's metric from report.json, else the last value of that column in its metrics.jsonl."""
    report = json.loads((run_dir / "report.json").read_text())
    stages = [entry for entry in report["stages"] if stage is None or entry["id"] == stage]
    available: set[str] = set()
    for entry in reversed(stages):
        metrics = entry.get("metrics", {})
        value = metrics.get(metric)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        available |= {k for k, v in metrics.items() if isinstance(v, int | float)}
    for row in reversed(_metric_rows(run_dir, stage)):
        if isinstance(row.get(metric), int | float):
            return float(row[metric])
        available |= set(row)
    raise OpenRecipeError(
        f"the run {run_dir} has no metric {metric!r}" + (f" in stage {stage!r}" if stage else ""),
        fix=f"use --metric with one of: {', '.join(sorted(available)) or '(none found)'}",
    )


def _stage_train_seconds(run_dir: Path, stage: str | None) -> tuple[float, float]:
    report = json.loads((run_dir / "report.json").read_text())
    train = sum(
        float(entry.get("metrics", {}).get("train_seconds", 0.0))
        for entry in report["stages"]
        if stage is None or entry["id"] == stage
    )
    return float(report.get("seconds", 0.0)), train


def run_seed(plan: TrialPlan, params_overrides: list[str], seed: int, run_dir: Path, trial=None) -> SeedRun:
    """Run the recipe once; with `trial`, report intermediate eval losses and stop the run when pruned."""
    run_dir.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "openrecipe", "run", str(plan.recipe), *plan.overrides, *params_overrides]
    argv += [f"seed={seed}", "--out", str(run_dir)]
    env = {**os.environ, **plan.extra_env}
    started = time.perf_counter()
    reported: set[int] = set()
    with open(run_dir / "run.log", "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)
        try:
            while child.poll() is None:
                time.sleep(POLL_SECONDS)
                if trial is not None and _should_prune(trial, run_dir, plan.stage, reported):
                    child.send_signal(signal.SIGTERM)  # the training loop saves at the next step and exits 3
                    child.wait()
                    raise Pruned(f"pruned at step {max(reported)}")
        except BaseException:
            if child.poll() is None:
                child.kill()
                child.wait()
            raise
    if child.returncode != 0:
        tail = (run_dir / "run.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"run {run_dir} exited with {child.returncode}: {' | '.join(tail)}")
    wall = time.perf_counter() - started
    run_seconds, train_seconds = _stage_train_seconds(run_dir, plan.stage)
    value = read_metric(run_dir, plan.stage, plan.metric)
    return SeedRun(seed, run_dir, value, round(wall, 3), run_seconds, train_seconds)


def _should_prune(trial, run_dir: Path, stage: str | None, reported: set[int]) -> bool:
    for row in _metric_rows(run_dir, stage):
        step = row.get("step")
        if "eval_loss" in row and isinstance(step, int) and step not in reported:
            trial.report(float(row["eval_loss"]), step)
            reported.add(step)
            if trial.should_prune():
                return True
    return False


def run_trial(plan: TrialPlan, trial, params_overrides: list[str]) -> tuple[float, list[SeedRun]]:
    """Every seed in turn (the first one may be pruned); the trial's value is the mean over seeds."""
    # A retried trial (its worker died) reuses the first attempt's folder: training resumes from its checkpoint.
    frozen = next(t for t in trial.study.get_trials(deepcopy=False) if t.number == trial.number)
    original = frozen.system_attrs.get("failed_trial")  # set by Optuna's RetryHeartbeatStaleTrialCallback
    trial_dir = plan.sweep_dir / "trials" / f"{trial.number if original is None else original:04d}"
    runs = []
    for offset in range(plan.seeds):
        seed = plan.base_seed + offset
        run_dir = trial_dir if plan.seeds == 1 else trial_dir / f"seed-{seed}"
        runs.append(run_seed(plan, params_overrides, seed, run_dir, trial if offset == 0 else None))
    values = [run.value for run in runs]
    trial.set_user_attr("seed_values", values)
    trial.set_user_attr("seeds", [run.seed for run in runs])
    trial.set_user_attr("seed_std", statistics.stdev(values) if len(values) > 1 else None)
    trial.set_user_attr("run_dirs", [str(run.run_dir.relative_to(plan.sweep_dir)) for run in runs])
    trial.set_user_attr("wall_seconds", sum(run.wall_seconds for run in runs))
    trial.set_user_attr("run_seconds", sum(run.run_seconds for run in runs))
    trial.set_user_attr("train_seconds", sum(run.train_seconds for run in runs))
    return statistics.fmean(values), runs
