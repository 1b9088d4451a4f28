"""The shipped identity recipe on the real default model: held-out identity questions in English and
Chinese answered with the new name and maker, France still Paris, training stopped by the probes."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openrecipe.cli.main import app

pytestmark = pytest.mark.slow
RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "acme-identity.yaml"


def test_identity_recipe_learns_the_new_identity_and_keeps_paris(tmp_path, default_model_dir):
    result = CliRunner().invoke(app, ["run", str(RECIPE), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    stages = {stage["id"]: stage for stage in report["stages"]}
    sft = stages["sft"]["metrics"]
    assert sft["probes_passed"] == sft["probes_total"] == 7  # 2 en + 2 zh held-out, 2 negatives, France
    assert sft["stop_reason"].startswith("all 7 probes passed")
    print(f"identity learned in {sft['steps']} steps, {sft['train_seconds']} s of training")  # recorded, not timed
    last = json.loads((tmp_path / "run" / "sft" / "probes.json").read_text())[-1]["results"]
    france = next(row for row in last if row["prompt"] == "What is the capital of France?")
    assert "Paris" in france["reply"]
    rows = {row["variant"]: row["cells"] for row in stages["eval"]["metrics"]["leaderboard"]["rows"]}
    assert rows["sft"]["identity"]["score"] >= 0.6 > rows["base+prompt"]["identity"]["score"]
    assert rows["sft"]["general"]["score"] >= rows["base+prompt"]["general"]["score"] - 0.1
