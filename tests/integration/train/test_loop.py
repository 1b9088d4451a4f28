"""In-process training behaviour: refusals on changed settings, extending, NaN safety, probes, outputs."""

import json

import pytest
from typer.testing import CliRunner

from openrecipe.cli.main import app
from tests.integration.train.helpers import chat_file, write_recipe

runner = CliRunner()


def run(recipe, out, *extra):
    return runner.invoke(app, ["run", str(recipe), "--out", str(out), *extra])


def test_resume_refuses_changed_trajectory_and_extend_continues(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl", count=16)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1)
    out = tmp_path / "run"
    assert run(recipe, out).exit_code == 0
    changed = run(recipe, out, "stages.sft.train.learning_rate=0.01", "seed=4")
    assert changed.exit_code == 2
    assert "learning_rate: 0.005 → 0.01" in changed.output and "seed: 3 → 4" in changed.output
    assert "--force" in changed.output
    longer = run(recipe, out, "stages.sft.train.epochs=2")
    assert longer.exit_code == 2 and "--extend" in longer.output
    extended = run(recipe, out, "stages.sft.train.epochs=2", "--extend")
    assert extended.exit_code == 0, extended.output
    assert "resuming from checkpoint step 4 of 8" in extended.output
    rows = [json.loads(line) for line in (out / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == list(range(1, 9))
    report = json.loads((out / "report.json").read_text())
    sft = report["stages"][0]
    assert sft["metrics"]["steps"] == 8
    for name in ("adapter", "model", "loss_curve", "metrics"):
        assert (out / sft["artifacts"][name]).exists()


def test_outputs_are_loadable_and_carry_the_training_template(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl", count=8)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=1)
    out = tmp_path / "run"
    result = run(recipe, out, "system_prompt=You are Nova.")
    assert result.exit_code == 0, result.output
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(out / "sft" / "model"))
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "You are Nova." in rendered and "SmolLM" not in rendered  # the recipe's prompt became the default
    for folder in ("model", "adapter"):
        chat = runner.invoke(app, ["chat", str(out / "sft" / folder), "-p", "hi", "--max-new-tokens", "2"])
        assert chat.exit_code == 0, chat.output


@pytest.mark.parametrize("compiled", [False, True])
def test_nonfinite_steps_are_skipped_counted_and_stop_the_run(tmp_path, tiny_model_dir, monkeypatch, compiled):
    import torch

    from openrecipe.train import loop

    calls = {"n": 0}
    original = loop._token_loss_sum

    def poisoned(model, batch, autocast):
        calls["n"] += 1
        loss = original(model, batch, autocast)
        # micro-batches 5..6 (step 3) are NaN once, then from micro-batch 11 on everything is NaN.
        return loss * float("nan") if calls["n"] in (5, 6) or calls["n"] >= 11 else loss

    monkeypatch.setattr(loop, "_token_loss_sum", poisoned)
    data = chat_file(tmp_path / "chat.jsonl", count=40)
    recipe = write_recipe(
        tmp_path, tiny_model_dir, data, epochs=2, nonfinite_patience=3, save_every_steps=2, compile=compiled
    )
    out = tmp_path / "run"
    result = run(recipe, out)
    assert result.exit_code == 2
    assert "3 consecutive steps had a NaN/inf" in result.output
    assert "last good checkpoint is step 6" in result.output  # step 6 was skipped: weights intact
    rows = [json.loads(line) for line in (out / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [row["nonfinite_steps"] for row in rows] == [0, 0, 1, 1, 1, 2, 3, 4]
    assert torch is not None


def test_qlora_on_cpu_is_a_clear_error(tmp_path, tiny_model_dir):
    data = chat_file(tmp_path / "chat.jsonl", count=8)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, method="qlora")
    result = run(recipe, tmp_path / "run")
    assert result.exit_code == 2
    assert "QLoRA needs a CUDA GPU" in result.output


def test_probes_stop_training_when_they_pass(tmp_path, tiny_model_dir):
    import yaml

    data = chat_file(tmp_path / "chat.jsonl", count=40)
    recipe = write_recipe(tmp_path, tiny_model_dir, data, epochs=2)
    body = yaml.safe_load(recipe.read_text())
    # An empty expectation list is invalid; a probe whose expectation is always met stops at the first check.
    body["stages"][0]["probes"] = {
        "identity": False,
        "every_steps": 2,
        "extra": [{"prompt": "hi", "expect": [""]}],
    }
    recipe.write_text(yaml.safe_dump(body))
    out = tmp_path / "run"
    result = run(recipe, out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    metrics = report["stages"][0]["metrics"]
    assert metrics["steps"] == 2 and "probes passed at step 2" in metrics["stop_reason"]
    assert json.loads((out / "sft" / "probes.json").read_text())[0]["results"][0]["passed"]
