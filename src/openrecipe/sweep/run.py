"""`openrecipe sweep`: settings from the recipe's `sweep:` block and the command line, checked before any trial."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console

from openrecipe.errors import OpenRecipeError
from openrecipe.sweep.config import SweepSettings
from openrecipe.sweep.space import Dimension, overrides_for, parse_space
from openrecipe.sweep.study import SweepJob, joined_job, open_study, run_workers, start_study
from openrecipe.sweep.summary import write_summary


def merge_settings(recipe_block: SweepSettings | None, cli: dict[str, Any]) -> SweepSettings:
    """Command-line values win over the recipe's `sweep:` block; `--space` replaces its whole space."""
    data = recipe_block.model_dump() if recipe_block is not None else {}
    for key, value in cli.items():
        if value is None or (key == "space" and not value):
            continue
        data[key] = value
    if isinstance(data.get("space"), list):
        stage = data.get("stage")
        data["space"] = {d.path: _values_text(d) for d in parse_space(data["space"], stage)}
        data["stage"] = stage
    try:
        settings = SweepSettings(**data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise OpenRecipeError(f"sweep settings: {problems}", fix="see `openrecipe sweep --help`") from None
    if not settings.space:
        raise OpenRecipeError(
            "nothing to search", fix="add --space 'train.learning_rate=loguniform(1e-5,3e-3)' or a `sweep.space:`"
        )
    return settings


def _values_text(dimension: Dimension) -> Any:
    if dimension.kind == "choice":
        return list(dimension.choices)
    return f"{dimension.kind}({dimension.low:g},{dimension.high:g})"


def check_space(recipe: Path, overrides: list[str], dimensions: list[Dimension]) -> None:
    """Validate the recipe at both ends of every range and at every listed value: a wrong path or an
    out-of-range value fails here, with the recipe's own message, not in trial 7."""
    from openrecipe.recipe import load_recipe

    for dimension in dimensions:
        values = dimension.choices if dimension.kind == "choice" else (dimension.low, dimension.high)
        for value in values:
            if dimension.kind in ("int", "logint"):
                value = int(value)
            try:
                load_recipe(recipe, [*overrides, *overrides_for({dimension.path: value})])
            except OpenRecipeError as error:
                raise OpenRecipeError(
                    f"search dimension {dimension.describe()} does not fit the recipe at {value!r}: {error.format()}",
                    fix="check the setting path (e.g. train.learning_rate with --stage ID) and its range",
                ) from None


def run_sweep(
    recipe_path: Path,
    overrides: list[str],
    sweep_dir: Path,
    cli: dict[str, Any],
    *,
    join: str | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console()
    if join is not None:
        storage = cli.get("storage") or str(sweep_dir / "study.journal")
        job = joined_job(storage, join, sweep_dir, cli.get("workers") or 1)
    else:
        from openrecipe.recipe import load_recipe

        recipe = load_recipe(recipe_path, overrides)
        settings = merge_settings(getattr(recipe, "sweep", None), cli)
        dimensions = parse_space(settings.space, settings.stage)
        if settings.stage is not None and settings.stage not in {s.id for s in recipe.stages}:
            raise OpenRecipeError(
                f"--stage {settings.stage!r} is not a stage of the recipe",
                fix=f"stage ids: {', '.join(s.id for s in recipe.stages)}",
            )
        check_space(recipe_path, overrides, dimensions)
        job = SweepJob(
            recipe_path.resolve(),
            overrides,
            sweep_dir.resolve(),
            settings,
            settings.study or recipe.name,
            recipe.seed,
        )
        start_study(job)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    console.print(
        f"sweep {job.study_name!r}: {job.settings.trials} trials x {job.settings.seeds} seeds, "
        f"{job.settings.workers} worker(s), storage {job.storage_url}"
    )
    run_workers(job)
    study = open_study(job, create=False)
    return write_summary(study, job.sweep_dir, job.settings.metric)
