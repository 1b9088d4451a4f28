"""`validate`, `schema`, `run`: recipes from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="Check a recipe and report every problem at once.")(validate)
    app.command(help="Print the recipe JSON schema.")(schema)
    app.command(help="Run a recipe's stages in order into a run folder.")(run)


def validate(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: list[str] = typer.Argument(None, help="dotted.key=value overrides"),
) -> None:
    from openrecipe.recipe.schema import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    console.print(
        f"[green]✓[/green] {recipe} is valid: recipe {loaded.name!r}, {len(loaded.stages)} stages "
        f"({', '.join(f'{s.id}:{s.kind}' for s in loaded.stages)})",
        soft_wrap=True,
    )


def schema() -> None:
    from openrecipe.recipe.schema import recipe_json_schema

    print(json.dumps(recipe_json_schema(), indent=2))


def run(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: list[str] = typer.Argument(None, help="dotted.key=value overrides, e.g. seed=7 stages.sft.epochs=2"),
    out: Path = typer.Option(None, "--out", "-o", help="Run folder (default: runs/<recipe name>)."),
    force: bool = typer.Option(False, "--force", help="Resume training even if trajectory settings changed."),
    extend: bool = typer.Option(False, "--extend", help="Continue a finished training stage to more steps/epochs."),
    detach: bool = typer.Option(False, "--detach", help="Run in the background (see `jobs`, `logs`, `stop`)."),
) -> None:
    from openrecipe.recipe.runner import run_recipe
    from openrecipe.recipe.schema import load_recipe

    loaded = load_recipe(recipe, overrides or [])
    run_dir = out or Path("runs") / loaded.name
    if detach:
        from openrecipe.recipe.jobs import start_detached

        argv = ["run", str(recipe.resolve()), *(overrides or []), "--out", str(run_dir.resolve())]
        argv += ["--force"] * force + ["--extend"] * extend
        pid = start_detached(argv, run_dir)
        console.print(f"running in the background (pid {pid}); follow with: openrecipe logs {run_dir} -f")
        return
    report = run_recipe(
        loaded,
        run_dir,
        recipe_dir=recipe.resolve().parent,
        console=console,
        options={"force": force, "extend": extend},
    )
    console.print(
        f"[bold green]run finished[/bold green] in {report['seconds']:.1f} s — report: {run_dir / 'report.json'}"
    )
