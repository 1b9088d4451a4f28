"""Exact resume: SIGKILL at random points (mid-accumulation, during a checkpoint write, in epoch 2),
then resume; the final weights and every per-step loss equal an uninterrupted run's, bit for bit."""

import signal
import subprocess
import sys
import time

import pytest

from tests.integration.train.helpers import (
    assert_bitwise_equal,
    chat_file,
    losses,
    run_cli,
    weights,
    write_recipe,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sigkill_anywhere_then_resume_is_bitwise_identical(tmp_path, tiny_model_dir, method):
    data = chat_file(tmp_path / "chat.jsonl")
    recipe = write_recipe(tmp_path, tiny_model_dir, data, method=method)
    straight = tmp_path / "straight"
    run_cli(["run", str(recipe), "--out", str(straight)])
    interrupted = tmp_path / "interrupted"
    # 40 examples / batch 4 = 10 steps an epoch, 20 in all; checkpoints every 3 steps.
    for fault in ("mid_accumulation@4", "checkpoint_mid_write@8", "step@13"):
        result = run_cli(["run", str(recipe), "--out", str(interrupted)], fault=fault, check=False)
        assert result.returncode == -signal.SIGKILL, (fault, result.stderr[-2000:])
    final = run_cli(["run", str(recipe), "--out", str(interrupted)])
    assert "resuming from checkpoint step 12" in final.stdout
    assert losses(interrupted) == losses(straight)
    assert len(losses(straight)) == 20
    assert_bitwise_equal(weights(interrupted, method), weights(straight, method))


def test_sigterm_saves_at_step_boundary_and_exits_3(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl", count=200)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, save_every_steps=1000, epochs=1)
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "openrecipe", "run", str(recipe), "--out", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = run_dir / "sft" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 3, stderr[-2000:]
    assert "re-run the same command to resume" in stderr
    saved = sorted((run_dir / "sft" / "checkpoints").iterdir())
    assert saved and (saved[-1] / "COMPLETE").exists()
    step = int(saved[-1].name.split("-")[1])
    assert 3 <= step < 50
    resumed = run_cli(["run", str(recipe), "--out", str(run_dir)])
    assert f"resuming from checkpoint step {step}" in resumed.stdout
