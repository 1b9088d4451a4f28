"""A tiny pretraining ladder end to end: rungs trained on the standard library's source, the law fitted,
the prediction written before the larger rung runs, the check, the transfer table and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from openrecipe.errors import OpenRecipeError

TINY = {
    "name": "tiny-ladder",
    "seed": 0,
    "ladder": {
        "family": {"head_dim": 4, "block_size": 16},
        "sizes": [
            {"width": 8, "depth": 1},
            {"width": 12, "depth": 1},
            {"width": 16, "depth": 2},
            {"width": 24, "depth": 2},
            {"width": 32, "depth": 3},
        ],
        "budgets": [512, 1024, 2048],
        "learning_rates": [3.0e-3, 1.0e-2],
        "grid_every_budget": 1,
        "batch_sizes": [4],
        "noise_seeds": 1,
        "eval_blocks": 32,
        "bootstrap": 10,
        "predict": {"width": 48, "depth": 4, "tokens": 4096, "check_multipliers": [0.5, 1.0]},
    },
}


def _recipe(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "ladder.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tiny_ladder_predicts_then_checks(tmp_path):
    from openrecipe.ladder.run import run_ladder

    out = tmp_path / "ladder"
    result = run_ladder(_recipe(tmp_path, TINY), [], out)
    assert result["non_embedding_span"] >= 30
    assert len(result["points"]) == 5 * 3
    prediction = json.loads((out / "prediction.json").read_text())
    check_runs = [r for r in result["check"]["runs"]]
    assert len(check_runs) == 2
    # The prediction was on disk before the check rung finished training.
    written = (out / "prediction.json").stat().st_mtime
    first_check = (
        out / "rungs" / next(p.name for p in (out / "rungs").iterdir() if p.name.startswith("w48-d4")) / "result.json"
    )
    assert written <= first_check.stat().st_mtime
    assert prediction["compute_multiple_of_largest_rung"] >= 1
    low, high = prediction["loss_interval"]
    assert low <= prediction["loss"] <= high
    assert len(prediction["fit"]["leave_one_out"]["errors"]) == 15
    assert len(prediction["fit"]["largest_held_out"]["errors"]) == 3
    assert len(prediction["fit"]["data_curvature"]["sizes"]) == 5
    # The rate law saw every budget of the smallest size and the first budget of the others.
    assert len(prediction["learning_rate_law"]["cells"]) == 3 + 4
    assert len([r for r in result["runs"] if r["phase"] == "sweep"]) == 2 * (3 + 4)
    assert result["budget"]["ladder_cpu_seconds"] > 0 and result["budget"]["check_cpu_seconds"] > 0
    assert (out / "manifest.json").is_file() and (out / "recipe.resolved.yaml").is_file()
    assert result["check"]["actual_loss"] > 0
    assert len(result["transfer"]["adjacent"]) == 4
    assert result["budget"]["fraction_flops"] > 0
    assert {"fit", "sweep"} <= {part.split('"')[0] for part in (out / "ladder.html").read_text().split('alt="')[1:]}
    report = (out / "ladder.md").read_text()
    assert "Prediction, then check" in report and "leave-one-out" in report and "not counted" in report
    # Re-running reuses every finished rung and gives the same fitted coefficients (same seed).
    again = run_ladder(_recipe(tmp_path, TINY), [], out)
    assert again["prediction"]["fit"]["law"] == result["prediction"]["fit"]["law"]
    assert result["budget"]["reused_runs"] == 0 and again["budget"]["reused_runs"] == again["budget"]["runs"] > 0
    assert again["budget"]["ladder_seconds"] == result["budget"]["ladder_seconds"]  # what the runs took, not the re-run
    assert f"which reused {again['budget']['runs']} of" in (out / "ladder.md").read_text()
    _publish_the_ladder(out, tmp_path / "bundle", result)


def _publish_the_ladder(out: Path, bundle: Path, result: dict) -> None:
    """`openrecipe publish` of the ladder folder: every run, the fit and the prediction, checksummed."""
    from typer.testing import CliRunner

    from openrecipe.cli.main import app
    from openrecipe.publish.bundle import verify_bundle

    published = CliRunner().invoke(app, ["publish", str(out), "--out", str(bundle)])
    assert published.exit_code == 0, published.output
    assert "a ladder:" in published.output
    runs = sorted(p.name for p in (bundle / "runs").iterdir())
    assert runs == sorted(f"{p.name}.json" for p in (out / "rungs").iterdir())
    shipped = json.loads((bundle / "ladder.json").read_text())
    assert shipped["prediction"]["fit"]["law"] == result["prediction"]["fit"]["law"]
    assert json.loads((bundle / "prediction.json").read_text())["loss"] == result["prediction"]["loss"]
    assert yaml.safe_load((bundle / "recipe.yaml").read_text())["ladder"]["budgets"] == TINY["ladder"]["budgets"]
    card = (bundle / "README.md").read_text()
    assert "predicted" in card and "actual" in card
    assert verify_bundle(bundle) == []
    assert str(out.parent) not in (bundle / "manifest.json").read_text()  # this machine's paths are rewritten


def test_too_few_sizes_is_a_recipe_error(tmp_path):
    from openrecipe.recipe import load_recipe

    broken = json.loads(json.dumps(TINY))
    broken["ladder"]["sizes"] = broken["ladder"]["sizes"][:3]
    with pytest.raises(OpenRecipeError, match="at least 5 are needed"):
        load_recipe(_recipe(tmp_path, broken))
