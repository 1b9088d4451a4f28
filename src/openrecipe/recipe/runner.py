"""Run a recipe's stages in order, each into RUN_DIR/<stage id>/, with a report after every stage.

A stage's record (RUN_DIR/<id>/.stage.json) is written last, after every artifact is in place, and holds
each artifact's size and SHA-256: a stage is reused only when its key matches and every artifact is still
the one recorded. Stages that cannot resume run in a temporary folder that replaces the old one on success.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from openrecipe.config.references import HubRef, PathRef, iter_references, resolve_location
from openrecipe.errors import OpenRecipeError, RunInterrupted
from openrecipe.models.templates import BUILTIN_TEMPLATES, ChatTemplate, resolve_chat_template
from openrecipe.provenance.manifest import code_version, git_commit, hash_path, package_versions, platform_info
from openrecipe.provenance.records import (
    REPORT,
    ArtifactRecord,
    RunRecord,
    StageRecord,
    artifact_sha256,
    relative_to_run,
)
from openrecipe.recipe.schema import RecipeBase
from openrecipe.stages.base import FILE, GGUF, MODEL, STAGE_KINDS, StageConfig, StageContext, StageResult
from openrecipe.utils.fs import atomic_write_json, atomic_write_text
from openrecipe.utils.hashing import sha256_json

STAGE_RECORD = ".stage.json"
PARTIAL_PREFIX = ".partial-"


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
    options = options or {}
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    recipe_dump = recipe.model_dump(mode="json", exclude_none=True)
    if launch_rank() == 0:
        # Under torchrun every rank runs this function on the same folder: one tidying it would delete another's
        # in-flight temporary file, so only rank 0 tidies and writes the resolved recipe.
        for name in remove_interrupted_writes(run_dir):
            console.print(f"[yellow]removed {name}, left by an interrupted run[/yellow]")
        atomic_write_text(
            run_dir / "recipe.resolved.yaml", yaml.safe_dump(recipe_dump, sort_keys=False, allow_unicode=True)
        )
    run = RunRecord(recipe=recipe.name, run_dir=run_dir)
    results: dict[str, StageResult] = {}
    keys: dict[str, str] = {}
    inputs: dict[str, Any] = {}
    started = time.perf_counter()
    common = recipe.model_dump(mode="json", exclude={"stages", "name", "description", "license", "sweep", "ladder"})
    base_files = _input_files(recipe.base_model, recipe_dir) + _input_files(recipe.chat_template, recipe_dir)
    chat_template = recipe_chat_template(recipe, recipe_dir)
    base_location = resolve_location(recipe.base_model, recipe_dir) if _is_location(recipe.base_model) else "default"
    for stage in recipe.stages:
        kind = STAGE_KINDS.get(stage.kind)
        stage_dir = run_dir / stage.id
        files = _input_files(stage, recipe_dir) + base_files
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
                "options": {k: v for k, v in options.items() if v},
            }
        )
        cached = _cached_record(run_dir, stage_dir, keys[stage.id])
        reused = "unchanged — reusing its results"
        if cached is None and not kind.resumable and launch_world() > 1 and launch_rank() != 0:
            # Under torchrun only training runs on every rank; rank 0 runs the other stages, the rest take its result.
            cached = _wait_for_rank_zero(run_dir, stage_dir, keys[stage.id], stage.id, console)
            reused = "done by rank 0 — using its results"
        if cached is not None:
            cached.status = "cached"
            cached.seconds = 0.0
            run.stages.append(cached)
            results[stage.id] = StageResult(
                metrics=cached.metrics,
                artifacts={name: str(record.location(run_dir)) for name, record in cached.artifacts.items()},
            )
            _write(run_dir / REPORT, run.to_json())
            console.print(f"[dim]✓ {stage.id} ({stage.kind}) {reused}[/dim]")
            continue
        # The old record goes first: a run killed from here on can never be mistaken for a finished one.
        (stage_dir / STAGE_RECORD).unlink(missing_ok=True)
        work_dir = stage_dir if kind.resumable else run_dir / f"{PARTIAL_PREFIX}{stage.id}"
        if not kind.resumable:
            shutil.rmtree(work_dir, ignore_errors=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        context = StageContext(
            run_dir=run_dir,
            stage_dir=work_dir,
            seed=recipe.seed,
            base_model=str(base_location),
            system_prompt=recipe.system_prompt,
            identity=recipe.identity,
            results=results,
            recipe_dir=recipe_dir,
            recipe_name=recipe.name,
            options=options,
            console=console,
            run=run,
            chat_template=chat_template,
        )
        console.rule(f"[bold]{stage.id}[/bold] ({stage.kind}) — {kind.summary}")
        record = StageRecord(id=stage.id, kind=stage.kind, key=keys[stage.id])
        run.stages.append(record)
        stage_start = time.perf_counter()
        try:
            result = kind.run(context, stage)
        except BaseException as error:
            record.status, record.seconds, record.error = (
                "failed",
                round(time.perf_counter() - stage_start, 3),
                str(error),
            )
            if not isinstance(error, OpenRecipeError | KeyboardInterrupt | RunInterrupted):
                record.traceback = traceback.format_exc()
            run.status, run.seconds = "failed", round(time.perf_counter() - started, 3)
            _write(run_dir / REPORT, run.to_json())
            raise
        if work_dir != stage_dir:
            result = _move_into_place(result, work_dir, stage_dir)
        results[stage.id] = result
        record.status, record.seconds = "ok", round(time.perf_counter() - stage_start, 3)
        record.metrics = result.metrics
        record.artifacts = _artifact_records(stage, result, run_dir)
        _write(stage_dir / STAGE_RECORD, record.to_cache_json())
        _write(run_dir / REPORT, run.to_json())
        console.print(f"[green]✓[/green] {stage.id} in {record.seconds:.1f} s")
    run.status, run.seconds = "ok", round(time.perf_counter() - started, 3)
    _write(run_dir / REPORT, run.to_json())
    _write(run_dir / "manifest.json", _manifest(recipe, run, recipe_dir, inputs, keys))
    return run.to_json()


def recipe_chat_template(recipe: RecipeBase, recipe_dir: Path | None) -> ChatTemplate | None:
    """The recipe's `chat_template`, read before any stage runs: a missing Jinja file stops the run at once."""
    setting = recipe.chat_template
    if setting is None:
        return None
    if isinstance(setting, PathRef):
        return resolve_chat_template(resolve_location(setting, recipe_dir))
    return BUILTIN_TEMPLATES.get(setting.name)


def _is_location(reference: Any) -> bool:
    return isinstance(reference, PathRef | HubRef)


def _input_files(config: Any, recipe_dir: Path | None) -> list[Path]:
    """Local files and folders the config names in its path fields (never ids, kinds or prompts)."""
    found: list[Path] = []
    for _, reference in iter_references(config):
        if isinstance(reference, PathRef | HubRef):
            path = resolve_location(reference, recipe_dir)
            if isinstance(path, Path) and path.exists() and (path.is_file() or any(path.iterdir())):
                found.append(path)
    return found


def _portable(path: Path, recipe_dir: Path | None) -> str:
    """Input paths in cache keys are relative to the recipe, so a copied project stays cached."""
    if recipe_dir is not None:
        try:
            return path.resolve().relative_to(recipe_dir.resolve()).as_posix()
        except ValueError:
            pass
    return str(path)


def _write(path: Path, value: Any) -> None:
    """Records, the report and the manifest are rank 0's (one process outside a launch): the other ranks' view
    of a stage they waited for or trained without saving is not the run's."""
    if launch_rank() == 0:
        atomic_write_json(path, value)


def launch_world() -> int:
    """How many processes a torchrun/accelerate launch started (`WORLD_SIZE`), 1 outside one."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def _wait_for_rank_zero(run_dir: Path, stage_dir: Path, key: str, stage_id: str, console: Console) -> StageRecord:
    """The record rank 0 writes when it finishes the stage (the run folder is shared by every rank, as checkpoints
    need). A failure rank 0 reports after this wait began stops this rank too; when rank 0 dies, torchrun stops
    the processes on its machine (other machines' waiting ranks: not tested)."""
    console.print(f"[dim]{stage_id}: rank 0 runs this stage; waiting for its result[/dim]")
    began = time.time()
    while True:
        record = _cached_record(run_dir, stage_dir, key)
        if record is not None:
            return record
        if _failed_since(run_dir / REPORT, stage_id, began):
            raise OpenRecipeError(
                f"stage {stage_id} failed on rank 0", fix="see rank 0's output, then re-run the same command"
            )
        time.sleep(0.5)


def _failed_since(report: Path, stage_id: str, since: float) -> bool:
    try:
        if report.stat().st_mtime < since:
            return False
        stages = json.loads(report.read_text()).get("stages", [])
    except (OSError, json.JSONDecodeError):
        return False
    return any(stage.get("id") == stage_id and stage.get("status") == "failed" for stage in stages)


def launch_rank() -> int:
    """This process's global rank in a torchrun/accelerate launch (`RANK`), 0 outside one."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def remove_interrupted_writes(run_dir: Path) -> list[str]:
    """Temporary files and folders of killed writers (stage folders, atomic writes); checkpoints are left
    to the checkpoint manager, which reports its own."""
    removed = []
    for root, folders, files in os.walk(run_dir):
        here = Path(root)
        for name in list(folders):
            if name == "checkpoints":
                folders.remove(name)
            elif name.startswith((PARTIAL_PREFIX, ".tmp-", ".old-")):
                shutil.rmtree(here / name, ignore_errors=True)
                folders.remove(name)
                removed.append((here / name).relative_to(run_dir).as_posix())
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                (here / name).unlink(missing_ok=True)
                removed.append((here / name).relative_to(run_dir).as_posix())
    return removed


def _move_into_place(result: StageResult, work_dir: Path, stage_dir: Path) -> StageResult:
    """Swap the finished temporary folder in for the stage folder and point the artifacts at it."""
    from openrecipe.utils.fs import fsync_dir, fsync_tree

    fsync_tree(work_dir)
    if stage_dir.exists():
        trash = stage_dir.with_name(f".old-{stage_dir.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(stage_dir, trash)
        os.replace(work_dir, stage_dir)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work_dir, stage_dir)
    fsync_dir(stage_dir.parent)
    artifacts = {}
    for name, path in result.artifacts.items():
        target = Path(path)
        try:
            target = stage_dir / target.relative_to(work_dir)
        except ValueError:
            pass
        artifacts[name] = str(target)
    return StageResult(metrics=result.metrics, artifacts=artifacts)


def _artifact_records(stage: StageConfig, result: StageResult, run_dir: Path) -> dict[str, ArtifactRecord]:
    declared = stage.artifact_kinds() or {}
    records = {}
    for name, path in result.artifacts.items():
        kind = declared.get(name) or (GGUF if name.startswith("gguf_") else MODEL if name == "model" else FILE)
        target = Path(path)
        if target.exists():
            records[name] = ArtifactRecord.measure(kind, target, run_dir)
        else:  # an artifact a stage names but did not write is recorded without a digest, and never reused
            records[name] = ArtifactRecord(kind, relative_to_run(target, run_dir), 0, "")
    return records


def _cached_record(run_dir: Path, stage_dir: Path, key: str) -> StageRecord | None:
    """A stage whose key is unchanged and whose every artifact is still the one recorded is not run again."""
    record_path = stage_dir / STAGE_RECORD
    if not record_path.is_file():
        return None
    try:
        data = json.loads(record_path.read_text())
        record = StageRecord.from_json({**data, "status": "ok"})
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    if record.key != key or not all(artifact.sha256 for artifact in record.artifacts.values()):
        return None
    if not all(artifact.unchanged(run_dir) for artifact in record.artifacts.values()):
        return None
    return record


def _manifest(
    recipe: RecipeBase,
    run: RunRecord,
    recipe_dir: Path | None,
    inputs: dict[str, Any],
    keys: dict[str, str],
) -> dict[str, Any]:
    artifacts = {}
    for stage in run.stages:
        for name, record in stage.artifacts.items():
            target = record.location(run.run_dir)
            if target.exists():
                artifacts[f"{stage.id}/{name}"] = {
                    "path": record.path,
                    "sha256": hash_path(target),
                    "bytes": record.bytes,
                    "kind": record.kind,
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
        # Which recipe fields are paths, so `publish` rewrites exactly those (never ids, kinds or prompts).
        "input_fields": [
            {"field": list(loc), "kind": "hub" if isinstance(ref, HubRef) else "path", "value": str(ref)}
            for loc, ref in iter_references(recipe)
            if isinstance(ref, PathRef | HubRef)
        ],
        "stage_keys": keys,
        "artifacts": artifacts,
    }


__all__ = ["STAGE_RECORD", "artifact_sha256", "remove_interrupted_writes", "run_recipe"]
