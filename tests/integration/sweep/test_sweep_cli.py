"""`openrecipe sweep` end to end on real recipes: every trial is a run folder, two workers share a study,
kill -9 of a worker loses no completed trial and its trial is retried when the command is re-run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from openrecipe.sweep.storage import open_storage

CLEAN_RECIPE = """name: clean-sweep
stages:
  - id: data
    kind: clean
    sources: [{path: qa.jsonl}]
    clean: {near_dedup: false, pii: false}
"""


@pytest.fixture
def clean_recipe(tmp_path: Path) -> Path:
    """A recipe whose only stage is fast (no model), so the sweep machinery is what is tested."""
    with open(tmp_path / "qa.jsonl", "w") as handle:
        for index in range(40):
            question = f"question {index} " + "x" * (7 * index)
            row = {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "ok"}]}
            handle.write(json.dumps(row) + "\n")
    path = tmp_path / "recipe.yaml"
    path.write_text(CLEAN_RECIPE)
    return path


def _sweep(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "openrecipe", "sweep", *args], capture_output=True, text=True, **kwargs
    )


def _study(sweep_dir: Path, name: str = "clean-sweep") -> optuna.Study:
    storage = open_storage(str(sweep_dir / "study.journal"), interval=1, grace=3, max_retries=2)
    return optuna.load_study(study_name=name, storage=storage)


def test_two_workers_share_one_study_and_every_trial_is_a_run_folder(clean_recipe, tmp_path):
    out = tmp_path / "sweep"
    space = "stages.data.clean.min_chars=[1,60,120,200]"
    done = _sweep(
        str(clean_recipe),
        "--space",
        space,
        "--sampler",
        "grid",
        "--trials",
        "4",
        "--workers",
        "2",
        "--metric",
        "rows_out",
        "--direction",
        "maximize",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    study = _study(out)
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["stages.data.clean.min_chars"] for t in complete) == [1, 60, 120, 200]
    assert {t.user_attrs["worker"] for t in complete} == {0, 1}
    for trial in complete:
        run_dir = out / trial.user_attrs["run_dirs"][0]
        report = json.loads((run_dir / "report.json").read_text())
        assert report["stages"][0]["metrics"]["rows_out"] == trial.value
        assert (run_dir / "manifest.json").is_file()
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["best"]["params"] == {"stages.data.clean.min_chars": 1}
    assert (out / "sweep.html").read_text().count("<img") == 1


def test_bad_dimension_fails_before_any_trial(clean_recipe, tmp_path):
    done = _sweep(str(clean_recipe), "--space", "stages.data.clean.min_chars=[-5,3]", "--out", str(tmp_path / "s"))
    assert done.returncode == 2
    assert "min_chars" in done.stderr and "-5" in done.stderr
    assert not (tmp_path / "s" / "trials").exists()


def test_kill_9_of_a_worker_loses_no_completed_trial_and_the_rerun_retries(clean_recipe, tmp_path):
    out = tmp_path / "sweep"
    args = [
        str(clean_recipe),
        "--space",
        "stages.data.clean.min_chars=int(1,300)",
        "--sampler",
        "random",
        "--trials",
        "3",
        "--metric",
        "rows_out",
        "--heartbeat",
        "1",
        "--out",
        str(out),
    ]
    worker = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", "sweep", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    killed_number = None
    while worker.poll() is None and killed_number is None:
        time.sleep(0.5)
        if not (out / "study.journal").exists():
            continue
        trials = _study(out).get_trials(deepcopy=False)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if any(t.state == TrialState.COMPLETE for t in trials) and running:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            killed_number = running[0].number
    assert killed_number is not None, "the sweep finished before it could be killed mid-trial"
    before = {t.number: t.value for t in _study(out).get_trials(states=(TrialState.COMPLETE,))}
    time.sleep(4)  # past the grace period (3 heartbeats) of the dead worker's trial
    rerun = _sweep(*args)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    trials = _study(out).get_trials()
    complete = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    assert len(complete) == 3
    assert all(complete[number].value == value for number, value in before.items())
    killed = next(t for t in trials if t.number == killed_number)
    assert killed.state == TrialState.FAIL
    retry = next(t for t in complete.values() if t.system_attrs.get("failed_trial") == killed_number)
    assert retry.params == killed.params
    # The retry runs in the first attempt's folder, which now holds a finished run.
    assert retry.user_attrs["run_dirs"] == [f"trials/{killed_number:04d}"]
