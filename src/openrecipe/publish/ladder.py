"""`publish` of a ladder folder: the runs, the fit and the prediction with its check, the report, the resolved
recipe and the manifest — no weights (every rung is a from-scratch model made to be measured, not used) and
no corpus (the source of Python's standard library is on every machine; its hashes are in the manifest)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.provenance.manifest import all_distributions
from openrecipe.publish.bundle import seal
from openrecipe.publish.sanitize import Machine
from openrecipe.utils.fs import atomic_directory

LADDER_FILES = ("ladder.json", "ladder.md", "ladder.html", "prediction.json", "manifest.json")


def is_ladder(folder: Path) -> bool:
    return (folder / "ladder.json").is_file()


def publish_ladder(ladder_dir: Path, out: Path) -> dict[str, Any]:
    """A bundle of a finished ladder; refused when the ladder did not finish or a secret is found."""
    missing = [name for name in (*LADDER_FILES, "recipe.resolved.yaml") if not (ladder_dir / name).is_file()]
    if missing:
        raise OpenRecipeError(
            f"{ladder_dir} has no {', '.join(missing)}",
            fix="run `openrecipe ladder RECIPE --out FOLDER` to the end (finished rungs are reused), then publish",
        )
    if out.exists() and any(out.iterdir()):
        raise OpenRecipeError(f"{out} already exists and is not empty", fix="choose a new --out folder")
    result = json.loads((ladder_dir / "ladder.json").read_text())
    manifest = json.loads((ladder_dir / "manifest.json").read_text())
    for stale in out.parent.glob(f".tmp-{out.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    with atomic_directory(out, overwrite=out.exists()) as tmp:
        for name in LADDER_FILES:
            shutil.copy2(ladder_dir / name, tmp / name)
        shutil.copy2(ladder_dir / "recipe.resolved.yaml", tmp / "recipe.yaml")
        runs = _copy_runs(ladder_dir, tmp / "runs")
        (tmp / "requirements.lock").write_text("\n".join(all_distributions()) + "\n")
        (tmp / "README.md").write_text(ladder_card(result, manifest), encoding="utf-8")
        recipe_dir = Path(manifest["recipe_dir"]) if manifest.get("recipe_dir") else None
        machine = Machine.here({ladder_dir: "<ladder>", **({recipe_dir: "<recipe>"} if recipe_dir else {})})
        rewritten, sums = seal(tmp, machine)
    return {
        "bundle": str(out),
        "files": len(sums),
        "inputs_copied": 0,
        "final_stage": None,
        "base_model": None,
        "ladder_runs": runs,
        "rewritten": rewritten,
    }


def _copy_runs(ladder_dir: Path, target: Path) -> int:
    """Every rung's result (settings, loss curve, FLOPs, seconds) as runs/NAME.json."""
    target.mkdir()
    count = 0
    for result in sorted((ladder_dir / "rungs").glob("*/result.json")):
        shutil.copy2(result, target / f"{result.parent.name}.json")
        count += 1
    return count


def ladder_card(result: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The bundle's README: what was fitted, what was predicted, what happened, what it cost."""
    prediction, check, budget = result["prediction"], result["check"], result["budget"]
    recipe = manifest.get("recipe", {})
    low, high = prediction["loss_interval"]
    corpus = manifest.get("corpus", {})
    lines = [
        f"# {recipe.get('name', 'ladder')}: a pretraining scaling ladder",
        "",
        recipe.get("description", ""),
        "",
        f"{result['headline']}.",
        "",
        "| | predicted | actual |",
        "|---|---|---|",
        f"| final held-out loss | {prediction['loss']:.4f} [{low:.4f}, {high:.4f}] | {check['actual_loss']:.4f} |",
        f"| best learning rate | {prediction['learning_rate']:.3g} | {check['best_grid_learning_rate']:.3g} |",
        "",
        f"Fit: `{json.dumps(prediction['fit']['law'])}` (95% bootstrap intervals in `ladder.json`); ladder compute "
        f"{100 * budget['fraction_flops']:.1f}% of the predicted rung's. `ladder.md` and `ladder.html` are the report, "
        "`prediction.json` the prediction as written before the predicted rung was trained, `runs/` every rung.",
        "",
        f"Corpus: {corpus.get('source', '?')} ({corpus.get('files', '?')} files, train sha256 "
        f"`{corpus.get('train_sha256', '?')}`), read from the local Python installation, not shipped. "
        f"Python {manifest.get('platform', {}).get('python', '?')}; another Python version has other files.",
        "",
        "Run it again: `openrecipe ladder recipe.yaml --out ladder`.",
    ]
    if recipe.get("license"):
        lines += ["", f"License: {recipe['license']}"]
    return "\n".join(lines) + "\n"
