"""`sweep` and `ladder`: search a recipe's settings with Optuna; run it on rungs of growing scale."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    app.command(
        help="Search recipe settings with Optuna (TPE/random/grid, pruning, seeds). Several workers, or machines "
        "with `--join STUDY` on a shared journal file or an RDB URL, share one study; re-running continues it."
    )(sweep)
    app.command(
        help="Run a scaling ladder. kind: pretrain fits L(N, D), predicts a larger rung, then runs it and reports "
        "the error; kind: finetune runs the sft stage on data fractions x LoRA ranks with a learning-rate grid."
    )(ladder)


def sweep(
    recipe: Path = typer.Argument(None, help="Recipe YAML file (not needed with --join)."),
    overrides: list[str] = typer.Argument(None, help="Fixed dotted.key=value overrides for every trial."),
    stage: str | None = typer.Option(None, "--stage", help="Stage id that short --space paths refer to."),
    space: list[str] = typer.Option(
        [], "--space", help="PATH=loguniform(a,b) | uniform(a,b) | int(a,b) | logint(a,b) | [v1,v2,...]"
    ),
    trials: int | None = typer.Option(None, "--trials", min=1, help="Completed or pruned trials to reach."),
    seeds: int | None = typer.Option(None, "--seeds", min=1, help="Runs per trial (their spread is seed noise)."),
    metric: str | None = typer.Option(None, "--metric", help="Stage metric or metrics.jsonl column (eval_loss)."),
    direction: str | None = typer.Option(None, "--direction", help="minimize (default) or maximize."),
    sampler: str | None = typer.Option(None, "--sampler", help="tpe (default), random or grid."),
    pruner: str | None = typer.Option(None, "--pruner", help="median (default), hyperband or none."),
    storage: str | None = typer.Option(
        None, "--storage", help="Journal file path or RDB URL (default OUT/study.journal)."
    ),
    study: str | None = typer.Option(None, "--study", help="Study name (default: the recipe's name)."),
    join: str | None = typer.Option(None, "--join", help="Work on this existing study (its settings are stored)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes on this machine."),
    heartbeat: int | None = typer.Option(None, "--heartbeat", min=1, help="Heartbeat interval of running trials (s)."),
    out: Path = typer.Option(None, "--out", "-o", help="Sweep folder (default: sweeps/<recipe name>)."),
) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.sweep.run import run_sweep

    if recipe is None and join is None:
        raise OpenRecipeError("give a recipe to start a sweep, or --join STUDY to work on an existing one")
    sweep_dir = out or Path("sweeps") / (join or study or recipe.stem)
    cli = {
        "stage": stage,
        "space": space,
        "trials": trials,
        "seeds": seeds,
        "metric": metric,
        "direction": direction,
        "sampler": sampler,
        "pruner": pruner,
        "storage": storage,
        "study": study,
        "workers": workers,
        "heartbeat_seconds": heartbeat,
    }
    result = run_sweep(recipe, overrides or [], sweep_dir, cli, join=join, console=console)
    table = Table(title=f"sweep {result['study']}: {result['metric']} (seed noise {_fmt(result['seed_std'])})")
    names = list(result["settings"][0]["params"]) if result["settings"] else []
    for column in [*[".".join(n.split(".")[-2:]) for n in names], "mean", "std", "runs", "verdict"]:
        table.add_column(column)
    for entry in result["settings"][:15]:
        table.add_row(
            *[_fmt(entry["params"].get(n)) for n in names],
            _fmt(entry["mean"]),
            _fmt(entry["std"]),
            str(entry["runs"]),
            entry["verdict"],
        )
    console.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in result["trials"].items() if v)
    console.print(f"trials: {counts} — {sweep_dir / 'sweep.md'}, {sweep_dir / 'sweep.html'}")


def ladder(
    recipe: Path = typer.Argument(..., help="Recipe YAML file with a `ladder:` block."),
    overrides: list[str] = typer.Argument(None, help="dotted.key=value overrides."),
    out: Path = typer.Option(None, "--out", "-o", help="Ladder folder (default: ladders/<recipe name>)."),
) -> None:
    from openrecipe.ladder.run import run_ladder

    loaded_dir = out
    result = run_ladder(recipe, overrides or [], loaded_dir, console=console)
    console.print(result["headline"])


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
