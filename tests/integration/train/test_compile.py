"""Compiled training (train.compile: true) runs on a few static padded shapes: the summed loss over the same
tokens means what eager's does, a bounded number of graphs compile once, and a killed run resumes bit for bit."""

import json
import signal

import pytest

from tests.integration.train.helpers import assert_bitwise_equal, chat_file, losses, run_cli, weights, write_recipe

pytestmark = pytest.mark.slow


def test_compiled_run_matches_eager_compiles_once_and_resumes_bitwise(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl")
    runs = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        folder = tmp_path / name
        folder.mkdir()
        recipe = write_recipe(
            folder, tiny_model_dir, data, compile=compiled, lora={"rank": 4, "alpha": 8, "dropout": 0.0}
        )
        runs[name] = (recipe, folder / "straight")
        result = run_cli(["run", str(recipe), "--out", str(runs[name][1])])
    assert "compiled" in result.stdout and "graphs in" in result.stdout  # the progress line says so
    eager, compiled = losses(runs["eager"][1]), losses(runs["compiled"][1])
    assert len(eager) == len(compiled) == 20
    for a, b in zip(eager, compiled, strict=True):
        assert abs(a - b) <= 1e-4 * max(1.0, abs(a))
    metrics = json.loads((runs["compiled"][1] / "report.json").read_text())["stages"][0]["metrics"]
    # 40 short chats of one length bucket: one shape, compiled once for the whole run (two epochs).
    assert metrics["compile_graphs"] == 1 and metrics["compile_seconds"] > 0
    rows = [json.loads(line) for line in (runs["compiled"][1] / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert {row["compile_graphs"] for row in rows} == {1}

    recipe, straight = runs["compiled"]
    interrupted = tmp_path / "compiled" / "interrupted"
    killed = run_cli(["run", str(recipe), "--out", str(interrupted)], fault="step@13", check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_cli(["run", str(recipe), "--out", str(interrupted)])
    assert losses(interrupted) == losses(straight)
    assert_bitwise_equal(weights(interrupted, "lora"), weights(straight, "lora"))
