"""Run a recipe's stages in order, each into RUN_DIR/<stage id>/, with a report after every stage."""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from openrecipe.errors import OpenRecipeError, RunInterrupted
from openrecipe.provenance.manifest import (
    code_version,
    git_commit,
    hash_path,
    input_files,
    package_versions,
    platform_info,
)
from openrecipe.recipe.schema import RecipeBase
from openrecipe.stages.base import STAGE_KINDS, StageContext, StageResult
from openrecipe.utils.fs import atomic_write_json, atomic_write_text
from openrecipe.utils.hashing import sha256_json


def _relative(path: str, run_dir: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(run_dir.resolve()))
    except ValueError:
        return path


def run_recipe(
    recipe: RecipeBase,
    run_dir: str | Path,
    *,
    recipe_dir: Path | None = None,
    console: Console | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute every stage; return the report (also written to RUN_DIR/report.json)."""
    console = console or Console()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_dump = recipe.model_dump(mode="json", exclude_none=True)
    atomic_write_text(
        run_dir / "recipe.resolved.yaml", yaml.safe_dump(recipe_dump, sort_keys=False, allow_unicode=True)
    )
    report: dict[str, Any] = {
        "recipe": recipe.name,
        "run_dir": str(run_dir),
        "status": "running",
        "stages": [],
    }
    results: dict[str, StageResult] = {}
    keys: dict[str, str] = {}
    inputs: dict[str, Any] = {}
    started = time.perf_counter()
    common = recipe.model_dump(mode="json", exclude={"stages", "name", "description"})
    for stage in recipe.stages:
        kind = STAGE_KINDS.get(stage.kind)
        stage_dir = run_dir / stage.id
        stage_dir.mkdir(parents=True, exist_ok=True)
        files = input_files(stage.model_dump(mode="json"), lambda text: _resolve(text, recipe_dir))
        files += input_files({"base": recipe.base_model}, lambda text: _resolve(text, recipe_dir))
        for path in files:
            inputs[str(path)] = hash_path(path)
        # A stage is skipped when its config, the recipe-wide settings, its input files, the code and
        # every upstream stage it reads are unchanged; a change anywhere upstream re-runs it.
        keys[stage.id] = sha256_json(
            {
                "stage": stage.model_dump(mode="json"),
                "recipe": common,
                "code": code_version(),
                "inputs": {_portable(path, recipe_dir): inputs[str(path)] for path in files},
                "upstream": {ref: keys.get(ref) for ref in stage.stage_refs()},
                "options": {k: v for k, v in (options or {}).items() if v},
            }
        )
        cached = _cached_result(run_dir, stage_dir, keys[stage.id])
        if cached is not None:
            results[stage.id] = cached
            report["stages"].append(
                {
                    "id": stage.id,
                    "kind": stage.kind,
                    "status": "cached",
                    "seconds": 0.0,
                    "metrics": {k: v for k, v in cached.metrics.items() if not k.startswith("_")},
                    "artifacts": {n: _relative(p, run_dir) for n, p in cached.artifacts.items()},
                }
            )
            atomic_write_json(run_dir / "report.json", report)
            console.print(f"[dim]✓ {stage.id} ({stage.kind}) unchanged — reusing its results[/dim]")
            continue
        context = StageContext(
            run_dir=run_dir,
            stage_dir=stage_dir,
            seed=recipe.seed,
            base_model=_model_reference(recipe.base_model, recipe_dir),
            system_prompt=recipe.system_prompt,
            identity=recipe.identity,
            results=results,
            recipe_dir=recipe_dir,
            recipe_name=recipe.name,
            options=options or {},
            console=console,
        )
        console.rule(f"[bold]{stage.id}[/bold] ({stage.kind}) — {kind.summary}")
        entry: dict[str, Any] = {"id": stage.id, "kind": stage.kind, "status": "running"}
        report["stages"].append(entry)
        stage_start = time.perf_counter()
        try:
            result = kind.run(context, stage)
        except BaseException as error:
            entry.update(status="failed", seconds=round(time.perf_counter() - stage_start, 3), error=str(error))
            if not isinstance(error, OpenRecipeError | KeyboardInterrupt | RunInterrupted):
                entry["traceback"] = traceback.format_exc()
            report.update(status="failed", seconds=round(time.perf_counter() - started, 3))
            atomic_write_json(run_dir / "report.json", report)
            raise
        # Kind and duration ride along with the metrics so later stages (the report) can show them.
        result.metrics.setdefault("_kind", stage.kind)
        result.metrics.setdefault("_seconds", round(time.perf_counter() - stage_start, 3))
        results[stage.id] = result
        atomic_write_json(
            stage_dir / STAGE_RECORD,
            {
                "key": keys[stage.id],
                "metrics": result.metrics,
                "artifacts": {name: _relative(path, run_dir) for name, path in result.artifacts.items()},
            },
        )
        entry.update(
            status="ok",
            seconds=round(time.perf_counter() - stage_start, 3),
            metrics={k: v for k, v in result.metrics.items() if not k.startswith("_")},
            artifacts={name: _relative(path, run_dir) for name, path in result.artifacts.items()},
        )
        atomic_write_json(run_dir / "report.json", report)
        console.print(f"[green]✓[/green] {stage.id} in {entry['seconds']:.1f} s")
    report.update(status="ok", seconds=round(time.perf_counter() - started, 3))
    atomic_write_json(run_dir / "report.json", report)
    atomic_write_json(run_dir / "manifest.json", _manifest(recipe, run_dir, recipe_dir, inputs, results, keys))
    return report


STAGE_RECORD = ".stage.json"


def _resolve(text: str, recipe_dir: Path | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute() and recipe_dir is not None and (recipe_dir / path).exists():
        return recipe_dir / path
    return path


def _model_reference(reference: str, recipe_dir: Path | None) -> str:
    """A relative model path in a recipe is relative to the recipe file (as data paths are)."""
    if recipe_dir is not None and not Path(reference).is_absolute() and (recipe_dir / reference).exists():
        return str(recipe_dir / reference)
    return reference


def _portable(path: Path, recipe_dir: Path | None) -> str:
    """Input paths in cache keys are relative to the recipe, so a copied project stays cached."""
    if recipe_dir is not None:
        try:
            return path.resolve().relative_to(recipe_dir.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _cached_result(run_dir: Path, stage_dir: Path, key: str) -> StageResult | None:
    """A stage whose inputs are unchanged and whose artifacts all still exist is not run again."""
    record_path = stage_dir / STAGE_RECORD
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError:
        return None
    artifacts = {name: str(run_dir / path) for name, path in record.get("artifacts", {}).items()}
    if record.get("key") != key or not all(Path(p).exists() for p in artifacts.values()):
        return None
    return StageResult(metrics=record.get("metrics", {}), artifacts=artifacts)


def _manifest(
    recipe: RecipeBase,
    run_dir: Path,
    recipe_dir: Path | None,
    inputs: dict[str, Any],
    results: dict[str, StageResult],
    keys: dict[str, str],
) -> dict[str, Any]:
    artifacts = {}
    for stage_id, result in results.items():
        for name, path in result.artifacts.items():
            target = Path(path)
            if target.exists():
                artifacts[f"{stage_id}/{name}"] = {
                    "path": _relative(path, run_dir),
                    "sha256": hash_path(target),
                }
    return {
        "recipe": recipe.model_dump(mode="json", exclude_none=True),
        "recipe_dir": str(recipe_dir) if recipe_dir else None,
        "seed": recipe.seed,
        "packages": package_versions(),
        "platform": platform_info(),
        "code_version": code_version(),
        "git_commit": git_commit(recipe_dir) if recipe_dir else None,
        "inputs": inputs,
        "stage_keys": keys,
        "artifacts": artifacts,
    }
