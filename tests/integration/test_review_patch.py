"""Hand edits made in the workbench reach the run: the clean stage applies the patch beside the file,
counts what it did, records the patch in the run's records, and re-runs when the patch changes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from openrecipe.cli.main import app
from openrecipe.provenance.records import RunRecord, summarize
from openrecipe.ui.app import create_app
from openrecipe.ui.settings import UiSettings
from openrecipe.utils.hashing import sha256_file

FAQ = (
    "question,answer\n"
    "What are your hours?,9 to 5.\n"
    "How do I reset my password?,\n"
    "Mail?,Write to bob@example.com today\n"
    "Where are you?,Berlin\n"
)
RECIPE = """name: reviewed
stages:
  - id: data
    kind: clean
    clean: {pii: false}
    sources:
      - path: ../data/faq.csv
"""


def run(recipe: Path, out: Path):
    return CliRunner().invoke(app, ["run", str(recipe), "--out", str(out)])


def cleaned(out: Path, stage: str = "data") -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (out / stage / "data.jsonl").read_text().splitlines()]
    return [(row["messages"][0]["content"], row["messages"][-1]["content"]) for row in rows]


def test_edits_made_in_the_workbench_are_applied_counted_and_recorded_by_the_clean_stage(tmp_path):
    workspace = tmp_path / "ws"
    (workspace / "recipes").mkdir(parents=True)
    recipe = workspace / "recipes" / "reviewed.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "run"
    with TestClient(create_app(UiSettings(workspace=workspace))) as client:
        page = client.get("/data")
        headers = {"X-CSRF-Token": re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)}
        client.post("/api/data/upload?name=faq.csv", content=FAQ, headers=headers)
        edit = {"file": "faq.csv", "row": 1, "values": {"answer": "Use the reset link."}}
        assert client.post("/api/data/edit", json=edit, headers=headers).json() == {"problems": []}
        client.post("/api/data/flag", json={"file": "faq.csv", "row": 3, "flagged": True}, headers=headers)
        proposals = client.post("/api/data/proposals", json={"file": "faq.csv"}, headers=headers).json()["proposals"]
        email = next(p for p in proposals if p["kind"] == "pii")
        decision = {"file": "faq.csv", "proposal": email, "decision": "accepted"}
        assert client.post("/api/data/decide", json=decision, headers=headers).status_code == 200

        result = run(recipe, out)
        assert result.exit_code == 0, result.output
        assert cleaned(out) == [
            ("What are your hours?", "9 to 5."),
            ("How do I reset my password?", "Use the reset link."),
            ("Mail?", "Write to <EMAIL> today"),
        ]
        patch = workspace / "data" / "faq.csv.review.json"
        counted = json.loads((out / "data" / "report.json").read_text())["review"]["faq.csv"]
        assert counted["patch"] == "faq.csv.review.json" and counted["patch_sha256"] == sha256_file(patch)
        assert (counted["edited_cells"], counted["flagged_removed"], counted["pii_accepted"]) == (1, 1, 1)
        assert "## Hand edits (review patches)" in (out / "data" / "report.md").read_text()
        stage = json.loads((out / "report.json").read_text())["stages"][0]
        assert stage["metrics"]["review"]["faq.csv"] == counted
        assert (
            "data: faq.csv: hand edits from faq.csv.review.json (SHA-256 "
            f"{counted['patch_sha256'][:12]}): 1 cells in 1 rows edited, 1 flagged rows and 0 duplicates removed, "
            "PII replacements 1 accepted / 0 rejected"
        ) in summarize(RunRecord.load(out)).cleaning
        manifest = json.loads((out / "manifest.json").read_text())
        inputs = {str(Path(name).resolve()): digest for name, digest in manifest["inputs"].items()}
        assert inputs[str(patch.resolve())] == sha256_file(patch)
        assert ["stages", 0, "sources", 0, "review"] in [entry["field"] for entry in manifest["input_fields"]]

        # Unchanged patch: the stage is reused; another edit in the workbench re-runs it.
        assert "unchanged" in run(recipe, out).output
        edit = {"file": "faq.csv", "row": 0, "values": {"answer": "Nine to five."}}
        client.post("/api/data/edit", json=edit, headers=headers)
        result = run(recipe, out)
        assert result.exit_code == 0 and "unchanged" not in result.output
        assert cleaned(out)[0] == ("What are your hours?", "Nine to five.")

    # The file changed under the patch: the stage stops, naming the patch and what to do.
    (workspace / "data" / "faq.csv").write_text(FAQ + "Refunds?,Within 30 days\n")
    result = run(recipe, out)
    assert result.exit_code == 2
    assert "faq.csv.review.json: the review patch was made for another version of faq.csv" in result.output


def test_a_recipe_can_name_the_patch_and_a_missing_one_is_an_error(tmp_path):
    (tmp_path / "faq.csv").write_text("question,answer\nHours?,9 to 5.\nReset?,\n")
    (tmp_path / "recipe.yaml").write_text(
        "name: named\nstages:\n  - id: data\n    kind: clean\n    sources:\n"
        "      - {path: faq.csv, review: edits/faq.review.json}\n"
    )
    result = run(tmp_path / "recipe.yaml", tmp_path / "run")
    assert result.exit_code == 2 and "sources.0.review: review patch not found: edits/faq.review.json" in result.output
    (tmp_path / "edits").mkdir()
    patch = {
        "file": "faq.csv",
        "sha256": sha256_file(tmp_path / "faq.csv"),
        "rows": {"1": {"line": 3, "was": {"answer": ""}, "set": {"answer": "Use the link."}}},
    }
    (tmp_path / "edits" / "faq.review.json").write_text(json.dumps(patch))
    result = run(tmp_path / "recipe.yaml", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert cleaned(tmp_path / "run")[1] == ("Reset?", "Use the link.")


def test_data_clean_applies_the_patch_beside_an_input_unless_told_not_to(tmp_path):
    from openrecipe.data.review import Review

    faq = tmp_path / "faq.csv"
    faq.write_text("question,answer\nHours?,9 to 5.\nReset?,\n")
    Review.load(faq).set_cells(1, 3, {"answer": "Use the link."}, {"answer": ""})
    result = CliRunner().invoke(app, ["data", "clean", str(faq), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "faq.csv: hand edits from faq.csv.review.json" in result.output
    assert cleaned(tmp_path, "out")[1] == ("Reset?", "Use the link.")
    plain = CliRunner().invoke(app, ["data", "clean", str(faq), "--out", str(tmp_path / "plain"), "--no-review"])
    assert plain.exit_code == 2 and f"{faq}:3: answer: empty assistant reply" in plain.output


def test_a_bundle_with_the_raw_inputs_carries_the_patch_and_reproduces_the_edits(tmp_path):
    from openrecipe.data.review import Review

    (tmp_path / "faq.csv").write_text("question,answer\nHours?,9 to 5.\nReset?,\n")
    Review.load(tmp_path / "faq.csv").set_cells(1, 3, {"answer": "Use the link."}, {"answer": ""})
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("../data/faq.csv", "faq.csv") + "license: mit\n")
    assert run(tmp_path / "recipe.yaml", tmp_path / "run").exit_code == 0
    raw = tmp_path / "raw"
    published = CliRunner().invoke(app, ["publish", str(tmp_path / "run"), "--out", str(raw), "--include-raw", "-y"])
    assert published.exit_code == 0, published.output
    source = yaml.safe_load((raw / "recipe.yaml").read_text())["stages"][0]["sources"][0]
    assert source["path"] == "data/faq.csv" and source["review"] == "data/faq.csv.review.json"
    assert (raw / "data" / "faq.csv.review.json").read_bytes() == (tmp_path / "faq.csv.review.json").read_bytes()
    reproduced = CliRunner().invoke(app, ["reproduce", str(raw), "--out", str(tmp_path / "rerun")])
    assert reproduced.exit_code == 0, reproduced.output
    assert cleaned(tmp_path / "rerun")[1] == ("Reset?", "Use the link.")
    # Without the raw inputs the patch (it holds the original cells) stays behind too.
    plain = tmp_path / "plain"
    assert CliRunner().invoke(app, ["publish", str(tmp_path / "run"), "--out", str(plain)]).exit_code == 0
    assert not list(plain.rglob("*.review.json"))
