"""The eval stage inside a run on the tiny model: a retrieval variant over the recipe's own data, paired
verdicts, the contamination check against earlier stages' data, and the report that shows them."""

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from openrecipe.cli.main import app

REPO = Path(__file__).resolve().parents[2]


def test_eval_stage_retrieval_verdicts_contamination_and_report(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("OPENRECIPE_HOME", str(tmp_path / "home"))
    faq = tmp_path / "faq.csv"
    faq.write_text("\n".join((REPO / "data/acme/faq.csv").read_text().splitlines()[:21]) + "\n")
    copied = {"prompt": "Is shipping free?", "reference": "$50", "domain": "support", "id": "copied"}
    held_out = (REPO / "data/acme/tests/support.jsonl").read_text().splitlines()[:6]
    tests = tmp_path / "support.jsonl"
    tests.write_text("".join(line + "\n" for line in held_out) + json.dumps(copied) + "\n")
    retrieval = {"sources": [{"path": "stage:data"}], "top_k": 2}
    recipe = {
        "name": "tiny-eval",
        "base_model": str(tiny_model_dir),
        "system_prompt": "You are Nova.",
        "stages": [
            {"id": "data", "kind": "clean", "sources": [{"path": "faq.csv"}]},
            {
                "id": "eval",
                "kind": "eval",
                "baseline": "base+prompt",
                "tests": ["support.jsonl"],
                "variants": [
                    {"name": "base+prompt", "model": "base"},
                    {"name": "base+retrieval", "model": "base", "retrieval": retrieval},
                ],
            },
            {"id": "report", "kind": "report"},
        ],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "run" / "eval" / "leaderboard.json").read_text())
    assert [row["variant"] for row in board["rows"]] == ["base+prompt", "base+retrieval"]
    assert board["rows"][0]["cells"]["support"]["n"] == 7
    [verdict] = board["verdicts"]
    assert verdict["domain"] == "support" and verdict["n"] == 7 and verdict["text"].startswith("support: ")
    assert [row["variant"] for row in board["versus_baseline"]] == ["base+retrieval"]
    assert [row["id"] for row in board["contamination"]["flagged_items"]] == ["copied"]
    report = (tmp_path / "run" / "report.md").read_text()
    assert "## Verdict per domain" in report and "## Contamination check" in report
    assert "Winners per domain" in report and "support: 1 of 7 test prompts" in report
    assert "contamination check — support: 1 of 7" in result.output
