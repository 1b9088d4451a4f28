"""The cpt stage: packed domain text with replay at a ratio, perplexity before/after (forgetting)."""

import json

import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app


def test_cpt_with_replay_reports_domain_and_general_perplexity(tmp_path, tiny_model_dir):
    (tmp_path / "domain.txt").write_text(
        "\n\n".join(f"The Acme widget {i} weighs {i} kilograms." * 6 for i in range(30))
    )
    (tmp_path / "general.txt").write_text("\n\n".join(f"Rivers flow to the sea number {i}." * 6 for i in range(30)))
    (tmp_path / "heldout.txt").write_text("Mountains are tall.\n\nThe sea is wide and deep.\n")
    recipe = {
        "name": "cpt",
        "base_model": str(tiny_model_dir),
        "stages": [
            {
                "id": "cpt",
                "kind": "cpt",
                "domain": [{"path": "domain.txt"}],
                "replay": [{"path": "general.txt"}],
                "replay_ratio": 0.25,
                "general_eval": [{"path": "heldout.txt"}],
                "block_size": 32,
                "train": {
                    "method": "full",
                    "learning_rate": 1e-3,
                    "max_steps": 6,
                    "batch_size": 4,
                    "precision": "fp32",
                    "eval_fraction": 0.2,
                },
            },
            {"id": "report", "kind": "report"},
        ],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "run" / "report.md").read_text()
    assert "cpt: replay 25%; domain perplexity" in report and "general (forgetting) perplexity" in report
    metrics = json.loads((tmp_path / "run" / "report.json").read_text())["stages"][0]["metrics"]
    ppl = metrics["perplexity"]
    assert ppl["domain_perplexity"]["after"] < ppl["domain_perplexity"]["before"]  # it learned the domain
    assert set(ppl["general_perplexity"]) == {"before", "after", "change_pct"}
    mixture = metrics["data"]["mixture"]
    share = mixture["replay"]["per_epoch"] / (mixture["replay"]["per_epoch"] + mixture["domain"]["per_epoch"])
    assert abs(share - 0.25) < 0.05  # blocks are equal-sized, so this is the share of tokens
    assert not (tmp_path / "run" / "cpt" / "tokens").exists()  # the on-disk blocks are removed once trained
    tokenized = metrics["data"]["tokenize"]
    assert tokenized["domain"]["examples_in"] == 30 and tokenized["seconds"] >= 0


def test_replay_ratio_without_replay_data_is_an_error(tmp_path, tiny_model_dir):
    (tmp_path / "domain.txt").write_text("text " * 400)
    recipe = {
        "name": "cpt",
        "base_model": str(tiny_model_dir),
        "stages": [{"id": "cpt", "kind": "cpt", "domain": [{"path": "domain.txt"}], "replay_ratio": 0.3}],
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "no replay corpus" in result.output
