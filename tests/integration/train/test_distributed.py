"""Two CPU processes (torchrun + gloo, DDP through accelerate) follow the single-process loss curve."""

import json
import subprocess
import sys

import pytest

from tests.integration.train.helpers import chat_file, losses, run_cli, write_recipe

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("compiled", [False, True])
def test_two_processes_match_one(tmp_path, tiny_model_dir, compiled):
    data = chat_file(tmp_path / "chat.jsonl", count=32)
    lora = {"rank": 4, "alpha": 8, "dropout": 0.0}
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1, lora=lora, compile=compiled)
    single = tmp_path / "single"
    run_cli(["run", str(recipe), "--out", str(single)])
    double = tmp_path / "double"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29533",
            "-m",
            "openrecipe",
            "run",
            str(recipe),
            "--out",
            str(double),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trajectory = json.loads(next((double / "sft" / "checkpoints").iterdir()).joinpath("trajectory.json").read_text())
    assert trajectory["world_size"] == 2  # really two processes, not one
    one, two = losses(single), losses(double)
    assert len(one) == len(two) == 8
    for a, b in zip(one, two, strict=True):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a))
