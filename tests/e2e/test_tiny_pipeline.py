"""The whole path on a tiny model, in the suite: every stage kind, caching, publish and reproduce."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def tiny_recipe(folder: Path, model_dir: Path) -> Path:
    data = folder / "inputs"
    data.mkdir()
    faq = data / "faq.csv"
    lines = (REPO / "data/acme/faq.csv").read_text().splitlines()
    faq.write_text("\n".join(lines[:41]) + "\n")
    tests = data / "support.jsonl"
    tests.write_text(
        "".join(line + "\n" for line in (REPO / "data/acme/tests/support.jsonl").read_text().splitlines()[:5])
    )
    (data / "heldout.txt").write_text((REPO / "data/general/heldout.txt").read_text())
    recipe = {
        "name": "tiny-pipeline",
        "seed": 1,
        "base_model": str(model_dir),
        "system_prompt": "You are Nova.",
        "identity": {"name": "Nova", "organization": "Acme Corp"},
        "stages": [
            {
                "id": "replay",
                "kind": "generate",
                "prompts": ["What is 2+2?", "Name a color."],
                "max_new_tokens": 8,
                "temperature": 1.0,
            },
            {"id": "data", "kind": "clean", "identity_set": True, "sources": [{"path": "inputs/faq.csv"}]},
            {
                "id": "sft",
                "kind": "sft",
                "data": [{"path": "stage:data", "weight": 0.8}, {"path": "stage:replay", "weight": 0.2}],
                "train": {"max_steps": 3, "batch_size": 4, "precision": "fp32", "learning_rate": 1e-3},
                "probes": {"identity": False},
                "tokenize": {"max_length": 96},
            },
            {
                "id": "merge",
                "kind": "merge",
                "method": "linear",
                "base": "base",
                "models": [{"model": "stage:sft", "weight": 0.5}],
            },
            {"id": "quantize", "kind": "quantize", "model": "stage:sft", "methods": ["int8"]},
            {"id": "export", "kind": "export", "model": "stage:sft", "gguf": ["q8_0", "q4_0"]},
            {
                "id": "eval",
                "kind": "eval",
                "baseline": "base+prompt",
                "tests": ["inputs/support.jsonl"],
                "variants": [
                    {"name": "base+prompt", "model": "base"},
                    {"name": "sft", "model": "stage:sft"},
                    {"name": "gguf", "model": "stage:export/gguf_q8_0"},
                ],
            },
            {
                "id": "parity",
                "kind": "parity",
                "reference": "stage:sft",
                "heldout": "inputs/heldout.txt",
                "on_regression": "warn",
                "max_new_tokens": 4,
                "artifacts": [
                    {"name": "int8", "model": "stage:quantize/int8"},
                    {"name": "q8_0", "model": "stage:export/gguf_q8_0"},
                ],
            },
            {"id": "report", "kind": "report"},
        ],
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("pipeline")
    recipe = tiny_recipe(folder, tiny_model_dir)
    result = runner.invoke(app, ["run", str(recipe), "--out", str(folder / "run")])
    assert result.exit_code == 0, result.output
    return folder, recipe


def test_every_stage_ran_and_the_report_is_complete(finished_run):
    folder, _ = finished_run
    run = folder / "run"
    report = json.loads((run / "report.json").read_text())
    assert report["status"] == "ok"
    assert [s["status"] for s in report["stages"]] == ["ok"] * 9
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["packages"]["torch"] and manifest["seed"] == 1
    assert any(key.endswith("faq.csv") for key in manifest["inputs"])
    assert "sft/model" in manifest["artifacts"] and "export/gguf_q4_0" in manifest["artifacts"]
    page = (run / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2  # loss curve and leaderboard, embedded
    for image in ("leaderboard.png",):
        assert (run / "report_assets" / image).is_file()
    parity = json.loads((run / "parity" / "parity.json").read_text())
    assert [row["artifact"] for row in parity["rows"]] == ["reference", "int8", "q8_0"]
    assert (run / "export" / "Modelfile").read_text().startswith("FROM ./tiny-pipeline-q4_0.gguf")


def test_rerun_is_cached_and_a_data_change_reruns_only_downstream(finished_run, tmp_path):
    folder, _recipe = finished_run
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    recipe_copy = copy / "recipe.yaml"
    body = yaml.safe_load(recipe_copy.read_text())
    recipe_copy.write_text(yaml.safe_dump(body, sort_keys=False))
    again = runner.invoke(app, ["run", str(recipe_copy), "--out", str(copy / "run")])
    assert again.exit_code == 0, again.output
    statuses = {s["id"]: s["status"] for s in json.loads((copy / "run" / "report.json").read_text())["stages"]}
    assert set(statuses.values()) == {"cached"}
    faq = copy / "inputs" / "faq.csv"
    faq.write_text(faq.read_text() + 'Is this new?,"Yes, it is new.",x\n')
    changed = runner.invoke(app, ["run", str(recipe_copy), "--out", str(copy / "run")])
    statuses = {s["id"]: s["status"] for s in json.loads((copy / "run" / "report.json").read_text())["stages"]}
    assert statuses["replay"] == "cached" and statuses["data"] == "ok"
    # Training notices that its data changed: it refuses to resume the old checkpoint, naming why.
    assert changed.exit_code == 2 and "data:" in changed.output and statuses["sft"] == "failed"


def test_publish_then_reproduce_and_detect_tampering(finished_run, tmp_path):
    folder, _ = finished_run
    bundle = tmp_path / "bundle"
    published = runner.invoke(app, ["publish", str(folder / "run"), "--out", str(bundle)])
    assert published.exit_code == 0, published.output
    card = (bundle / "README.md").read_text()
    assert card.startswith("---\nbase_model:") and "## Limitations" in card
    for path in (
        "recipe.yaml",
        "requirements.lock",
        "manifest.json",
        "model/model.safetensors",
        "data/faq.csv",
        "data/cleaned-data.jsonl",
        "logs/sft/metrics.jsonl",
        "report/report.html",
        "gguf/tiny-pipeline-q4_0.gguf",
        "SHA256SUMS",
    ):
        assert (bundle / path).is_file(), path
    assert "torch==" in (bundle / "requirements.lock").read_text()
    recipe = yaml.safe_load((bundle / "recipe.yaml").read_text())
    assert recipe["stages"][1]["sources"][0]["path"] == "data/faq.csv"
    good = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "rerun")])
    assert good.exit_code == 0, good.output
    assert "final weights identical" in good.output and "FAIL" not in good.output
    data = bundle / "data" / "faq.csv"
    data.write_text(data.read_text().replace("30 days", "60 days"))
    bad = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "rerun2")])
    assert bad.exit_code == 1
    assert "data/faq.csv: modified" in bad.output


def test_publish_refuses_unfinished_runs_and_offline_push(tmp_path, monkeypatch):
    (tmp_path / "run").mkdir()
    result = runner.invoke(app, ["publish", str(tmp_path / "run"), "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "has no manifest.json" in result.output
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    result = runner.invoke(
        app, ["publish", str(tmp_path / "run"), "--out", str(tmp_path / "b"), "--push-to-hub", "a/b"]
    )
    assert result.exit_code == 2 and "HF_HUB_OFFLINE" in result.output
    assert not (tmp_path / "b").exists()


def test_report_points_at_the_trained_model_and_the_gguf(finished_run):
    folder, _ = finished_run
    report = (folder / "run" / "report.md").read_text()
    assert f"openrecipe chat {folder / 'run' / 'sft' / 'model'}" in report
    assert "--engine llamacpp" in report
