"""`publish` and `reproduce`: a finished run as a bundle, and a bundle re-run and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

# Moved to jobs_commands; kept importable here until openrecipe.ui.jobs imports them from there.
from openrecipe.cli.jobs_commands import _alive, start_detached  # noqa: F401

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="Bundle a finished run: model card, recipe, data, lock file, logs, reports, weights, GGUF.")(
        publish
    )
    app.command(help="Re-run a bundle and verify data, weights and metrics; exit 0 only if all match.")(reproduce)


def publish(
    run_dir: Path = typer.Argument(..., help="A finished run folder."),
    out: Path = typer.Option(..., "--out", "-o", help="New bundle folder."),
    push_to_hub: str | None = typer.Option(None, "--push-to-hub", help="Upload the bundle to this hub repo."),
) -> None:
    from openrecipe.publish.bundle import publish as write_bundle
    from openrecipe.publish.bundle import push_to_hub as upload

    if push_to_hub:
        from huggingface_hub import constants

        from openrecipe.errors import OpenRecipeError

        if constants.HF_HUB_OFFLINE:  # checked before doing any work
            raise OpenRecipeError("cannot push: HF_HUB_OFFLINE is set", fix="drop --push-to-hub, or go online")
    info = write_bundle(run_dir, out)
    console.print(f"bundle written to {out} ({info['files']} files, {info['inputs_copied']} input files copied)")
    if push_to_hub:
        console.print(f"uploaded: {upload(out, push_to_hub)}")


def reproduce(
    bundle: Path = typer.Argument(..., help="A folder written by `openrecipe publish`."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to re-run it."),
) -> None:
    from openrecipe.publish.reproduce import reproduce as run_checks

    checks = run_checks(bundle, out, _run_bundle)
    table = Table(title="reproduction")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in checks:
        table.add_row(check["check"], "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]", check["detail"])
    console.print(table)
    if not all(check["passed"] for check in checks):
        raise typer.Exit(1)


def _run_bundle(bundle: Path, out: Path) -> dict[str, Any]:
    """A bundle's recipe is confined to the bundle: no absolute paths, no `..`, no reads through links."""
    from openrecipe.recipe.runner import run_recipe
    from openrecipe.recipe.schema import load_recipe

    recipe = load_recipe(bundle / "recipe.yaml", confined=True)
    return run_recipe(recipe, out, recipe_dir=bundle.resolve(), console=console, options={"confined": True})
