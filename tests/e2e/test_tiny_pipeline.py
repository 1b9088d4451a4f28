"""The whole path on a tiny model, in the suite: every stage kind, caching, publish and reproduce."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.utils.hashing import sha256_file

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
        "license": "apache-2.0",
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
    assert "no known hub id" in published.output  # the tiny base is a local folder: publish says so
    for path in (
        "recipe.yaml",
        "requirements.lock",
        "manifest.json",
        "model.safetensors",
        "config.json",
        "adapter/adapter_config.json",
        "data/cleaned-data.jsonl",
        "data/support.jsonl",
        "logs/sft/metrics.jsonl",
        "report/report.html",
        "gguf/tiny-pipeline-q4_0.gguf",
        "SHA256SUMS",
    ):
        assert (bundle / path).is_file(), path
    assert not (bundle / "data" / "faq.csv").exists() and not (bundle / "model").exists()
    assert "torch==" in (bundle / "requirements.lock").read_text()
    # The bundle trains from the cleaned data, under the label the clean stage's output had.
    recipe = yaml.safe_load((bundle / "recipe.yaml").read_text())
    assert [s["kind"] for s in recipe["stages"]].count("clean") == 0
    sft = next(s for s in recipe["stages"] if s["id"] == "sft")
    assert {key: sft["data"][0][key] for key in ("path", "weight", "name")} == {
        "path": "data/cleaned-data.jsonl",
        "weight": 0.8,
        "name": "data",
    }
    # Nothing of this machine's folders is left in any text file.
    for path in bundle.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".md", ".yaml", ".html", ".txt", ""}:
            assert str(folder) not in path.read_text(errors="replace"), path
    good = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "rerun")])
    assert good.exit_code == 0, good.output
    assert "final weights identical" in good.output and "FAIL" not in good.output
    data = bundle / "data" / "cleaned-data.jsonl"
    data.write_text(data.read_text().replace("30 days", "60 days"))
    bad = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "rerun2")])
    assert bad.exit_code == 1
    assert "data/cleaned-data.jsonl: modified" in bad.output


def test_the_bundle_follows_the_hub_layout(finished_run, tmp_path):
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM

    folder, _ = finished_run
    bundle = tmp_path / "bundle"
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the tiny local base stands in for
    published = runner.invoke(app, ["publish", str(folder / "run"), "--out", str(bundle), "--base-model-id", hub_id])
    assert published.exit_code == 0, published.output
    loaded = AutoModelForCausalLM.from_pretrained(str(bundle))  # weights at the top level, as from a repo id
    trained = AutoModelForCausalLM.from_pretrained(str(folder / "run" / "sft" / "model"))
    assert all((a == b).all() for a, b in zip(loaded.state_dict().values(), trained.state_dict().values(), strict=True))
    card = ModelCard.load(bundle / "README.md")
    assert card.data.license == "apache-2.0" and card.data.base_model == hub_id
    assert card.data.datasets == ["faq"]
    results = card.data.eval_results
    assert "tiny-pipeline/support" in {r.dataset_type for r in results}
    assert {r.metric_name for r in results} >= {"base+prompt support", "sft support"}
    adapter = json.loads((bundle / "adapter" / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] == hub_id
    names = {path.name for path in (bundle / "gguf").glob("*.gguf")}  # the quantization type in each name
    assert names == {"tiny-pipeline-q8_0.gguf", "tiny-pipeline-q4_0.gguf"}


def test_include_raw_lists_the_pii_clean_replaced_and_asks(finished_run, tmp_path):
    folder, _ = finished_run
    command = ["publish", str(folder / "run"), "--out", str(tmp_path / "raw"), "--include-raw"]
    refused = runner.invoke(app, command, input="n\n")
    assert refused.exit_code == 2 and "data:" in refused.output and "not confirmed" in refused.output
    assert not (tmp_path / "raw").exists()
    confirmed = runner.invoke(app, [*command, "--yes"])
    assert confirmed.exit_code == 0, confirmed.output
    assert (tmp_path / "raw" / "data" / "faq.csv").is_file()
    recipe = yaml.safe_load((tmp_path / "raw" / "recipe.yaml").read_text())
    assert recipe["stages"][1]["sources"][0]["path"] == "data/faq.csv"


def test_a_bundle_from_before_the_hub_layout_still_reproduces(finished_run, tmp_path):
    """Old bundles: weights in model/, raw inputs and the clean stage in the recipe."""
    folder, _ = finished_run
    bundle = tmp_path / "old"
    assert (
        runner.invoke(app, ["publish", str(folder / "run"), "--out", str(bundle), "--include-raw", "-y"]).exit_code == 0
    )
    (bundle / "model").mkdir()
    for name in (
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
        "openrecipe.json",
    ):
        if (bundle / name).exists():
            (bundle / name).rename(bundle / "model" / name)
    shutil.rmtree(bundle / "adapter")
    sums = [
        f"{sha256_file(p)}  {p.relative_to(bundle).as_posix()}"
        for p in sorted(bundle.rglob("*"))
        if p.is_file() and p.name != "SHA256SUMS"
    ]
    (bundle / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    result = runner.invoke(app, ["reproduce", str(bundle), "--out", str(tmp_path / "rerun")])
    assert result.exit_code == 0, result.output
    assert "cleaned data identical" in result.output and "final weights identical" in result.output


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
