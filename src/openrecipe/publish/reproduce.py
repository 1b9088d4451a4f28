"""`reproduce`: re-run a bundle's recipe from its own data and check that data, weights and evaluation
metrics come out the same — a table of checks, each pass or fail."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console

from openrecipe.errors import OpenRecipeError
from openrecipe.publish.bundle import verify_bundle
from openrecipe.utils.hashing import sha256_file, sha256_tree


def _leaderboards(report: dict[str, Any]) -> dict[str, Any]:
    return {s["id"]: s["metrics"]["leaderboard"] for s in report["stages"] if "leaderboard" in s.get("metrics", {})}


def reproduce(bundle: Path, out: Path, console: Console) -> list[dict[str, Any]]:
    from openrecipe.recipe.runner import run_recipe
    from openrecipe.recipe.schema import load_recipe

    checks: list[dict[str, Any]] = []
    tampered = verify_bundle(bundle)
    checks.append(
        {
            "check": "bundle files match SHA256SUMS",
            "passed": not tampered,
            "detail": "; ".join(tampered) if tampered else "all files untouched",
        }
    )
    if tampered:
        return checks
    recipe = load_recipe(bundle / "recipe.yaml")
    report = run_recipe(recipe, out, recipe_dir=bundle, console=console)
    original_stages = {s["id"]: s for s in json.loads((bundle / "report" / "report.json").read_text())["stages"]}
    for stage in report["stages"]:
        if stage["kind"] == "clean":
            original = bundle / "data" / f"cleaned-{stage['id']}.jsonl"
            same = original.is_file() and sha256_file(original) == sha256_file(out / stage["artifacts"]["data"])
            checks.append(
                {
                    "check": f"{stage['id']}: cleaned data identical",
                    "passed": same,
                    "detail": "same SHA-256" if same else "differs",
                }
            )
        if stage["kind"] in ("sft", "cpt") and stage["id"] == _final_training(report):
            weights = {
                k: v for k, v in sha256_tree(out / stage["artifacts"]["model"]).items() if k.endswith(".safetensors")
            }
            published = {k: v for k, v in sha256_tree(bundle / "model").items() if k.endswith(".safetensors")}
            same = bool(weights) and weights == published
            checks.append(
                {
                    "check": f"{stage['id']}: final weights identical",
                    "passed": same,
                    "detail": "same SHA-256" if same else f"{len(weights)} files differ",
                }
            )
    before = _leaderboards({"stages": list(original_stages.values())})
    after = _leaderboards(report)
    for stage_id, board in before.items():
        same = after.get(stage_id) is not None and _scores(after[stage_id]) == _scores(board)
        checks.append(
            {
                "check": f"{stage_id}: evaluation metrics identical",
                "passed": same,
                "detail": "every cell equal" if same else "scores differ",
            }
        )
    if len(checks) == 1:
        raise OpenRecipeError("the bundle's run has nothing to compare (no data, training or evaluation stages)")
    return checks


def _final_training(report: dict[str, Any]) -> str | None:
    return next((s["id"] for s in reversed(report["stages"]) if s["kind"] in ("sft", "cpt")), None)


def _scores(board: dict[str, Any]) -> list[Any]:
    return [
        (
            row["variant"],
            sorted((d, round(c.get("score", c.get("perplexity", 0)), 6)) for d, c in row["cells"].items()),
        )
        for row in board["rows"]
    ]
