"""`reproduce`: re-run a bundle's recipe from its own data and check that data, weights and evaluation
metrics come out the same — a table of checks, each pass or fail.

The run itself is handed in (`run_bundle`), so this module reads run records and never the runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.provenance.records import REPORT, RunRecord
from openrecipe.publish.bundle import unsafe_entries, verify_bundle
from openrecipe.utils.hashing import sha256_file, sha256_tree

# (bundle folder, output folder) -> the finished run's report; it must read only inside the bundle.
RunBundle = Callable[[Path, Path], dict[str, Any]]


def reproduce(bundle: Path, out: Path, run_bundle: RunBundle) -> list[dict[str, Any]]:
    unsafe = unsafe_entries(bundle)
    if unsafe:
        raise OpenRecipeError(f"{bundle} is not a safe bundle: {'; '.join(unsafe[:5])}", fix="re-publish it")
    out = out.resolve()
    if out == bundle.resolve() or out.is_relative_to(bundle.resolve()) or bundle.resolve().is_relative_to(out):
        raise OpenRecipeError(f"--out {out} overlaps the bundle", fix="choose a folder outside the bundle")
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
    rerun = RunRecord.from_json(run_bundle(bundle, out), out)
    original = RunRecord.load_file(bundle / "report" / REPORT, bundle)
    final = rerun.final_training_stage()
    for stage in rerun.stages:
        if stage.kind == "clean" and "data" in stage.artifacts:
            published = bundle / "data" / f"cleaned-{stage.id}.jsonl"
            same = published.is_file() and sha256_file(published) == sha256_file(stage.path_of("data", out))
            checks.append(
                {
                    "check": f"{stage.id}: cleaned data identical",
                    "passed": same,
                    "detail": "same SHA-256" if same else "differs",
                }
            )
        if final is not None and stage.id == final.id:
            weights = {k: v for k, v in sha256_tree(stage.path_of("model", out)).items() if k.endswith(".safetensors")}
            published = published_weights(bundle)
            same = bool(weights) and weights == published
            checks.append(
                {
                    "check": f"{stage.id}: final weights identical",
                    "passed": same,
                    "detail": "same SHA-256" if same else f"{len(weights)} files differ",
                }
            )
    after = rerun.leaderboards()
    for stage_id, board in original.leaderboards().items():
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


def published_weights(bundle: Path) -> dict[str, str]:
    """SHA-256 of the bundle's weight files: at the top level, or in model/ in bundles made before the Hub
    layout (both reproduce)."""
    if (bundle / "model" / "config.json").is_file():
        tree = sha256_tree(bundle / "model")
    else:
        tree = {path.name: sha256_file(path) for path in bundle.glob("*.safetensors") if path.is_file()}
    return {name: digest for name, digest in tree.items() if name.endswith(".safetensors")}


def _scores(board: dict[str, Any]) -> list[Any]:
    return [
        (
            row["variant"],
            sorted((d, round(c.get("score", c.get("perplexity", 0)), 6)) for d, c in row["cells"].items()),
        )
        for row in board["rows"]
    ]
