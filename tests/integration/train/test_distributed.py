"""Two CPU processes (torchrun + gloo, DDP through accelerate) follow the single-process loss curve."""

import json
import subprocess
import sys

import pytest
import yaml

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


def test_stages_around_training_run_once_on_rank_zero(tmp_path, tiny_model_dir):
    """A clean stage before training (as every imported config has): rank 0 runs it in its temporary folder, the
    other rank waits for its record; only rank 0 writes the report."""
    from tests.integration.train.test_fsdp import _two_processes

    data = chat_file(tmp_path / "chat.jsonl", count=32)
    recipe_path = write_recipe(tmp_path, tiny_model_dir, data, epochs=1, lora={"rank": 4, "alpha": 8, "dropout": 0.0})
    recipe = yaml.safe_load(recipe_path.read_text())
    clean = {"id": "data", "kind": "clean", "sources": [{"path": str(data)}]}
    recipe["stages"] = [clean, {**recipe["stages"][0], "data": [{"path": "stage:data"}]}]
    recipe_path.write_text(yaml.safe_dump(recipe))
    out = tmp_path / "run"
    code, stdout, stderr = _two_processes(recipe_path, out)
    assert code == 0, stderr[-3000:]
    assert stdout.count("data: rank 0 runs this stage; waiting for its result") == 1
    assert stdout.count("✓ data (clean) done by rank 0 — using its results") == 1
    report = json.loads((out / "report.json").read_text())
    assert [(stage["id"], stage["status"]) for stage in report["stages"]] == [("data", "ok"), ("sft", "ok")]
    assert len(losses(out)) == 8
