"""`publish` and `reproduce`: a finished run as a bundle, and a bundle re-run and verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def register(app: typer.Typer) -> None:
    app.command(help="Bundle a finished run: model card, recipe, data, lock file, logs, reports, weights, GGUF.")(
        publish
    )
    app.command(help="Re-run a bundle and verify data, weights and metrics; exit 0 only if all match.")(reproduce)


def publish(
    run_dir: Path = typer.Argument(..., help="A finished run folder, or a finished ladder folder."),
    out: Path = typer.Option(..., "--out", "-o", help="New bundle folder."),
    push_to_hub: str | None = typer.Option(None, "--push-to-hub", help="Upload the bundle to this hub repo."),
    public: bool = typer.Option(False, "--public", help="Make the hub repository public (default: private)."),
    include_raw: bool = typer.Option(
        False, "--include-raw", help="Also ship the raw inputs clean stages read (PII and all); asks first."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation (with --include-raw)."),
    base_model_id: str | None = typer.Option(
        None, "--base-model-id", help="Hub id of the base model, when the recipe names a local folder."
    ),
) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.publish.bundle import publish as write_bundle
    from openrecipe.publish.bundle import push_to_hub as upload

    if public and not push_to_hub:
        raise OpenRecipeError("--public only applies with --push-to-hub", fix="add --push-to-hub OWNER/NAME")
    if push_to_hub:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:  # checked before doing any work
            raise OpenRecipeError("cannot push: HF_HUB_OFFLINE is set", fix="drop --push-to-hub, or go online")
    if include_raw:
        _confirm_raw(run_dir, yes)
    info = write_bundle(run_dir, out, include_raw=include_raw, base_model_id=base_model_id)
    console.print(f"bundle written to {out} ({info['files']} files, {info['inputs_copied']} input files copied)")
    if "ladder_runs" in info:
        console.print(f"  a ladder: {info['ladder_runs']} runs, the fit, the prediction and its check")
    elif not info["base_model"]:
        console.print(
            "[yellow]the base model has no known hub id: the card names none and the adapter names its folder; "
            "pass --base-model-id OWNER/NAME[/yellow]"
        )
    if info["rewritten"]:
        console.print(f"  machine paths and user name rewritten in {len(info['rewritten'])} files")
    if push_to_hub:
        visibility = "public" if public else "private"
        console.print(f"uploaded ({visibility}): {upload(out, push_to_hub, public=public)}")


def _confirm_raw(run_dir: Path, yes: bool) -> None:
    """The raw inputs hold everything clean replaced: say how much, and ask."""
    from openrecipe.errors import OpenRecipeError
    from openrecipe.provenance.records import RunRecord
    from openrecipe.publish.cleaned import pii_counts

    counts = pii_counts(RunRecord.load(run_dir).stages) if (run_dir / "report.json").is_file() else {}
    console.print("--include-raw ships the raw inputs; clean replaced in them:")
    for stage_id, rules in counts.items():
        listed = ", ".join(f"{count} {rule.removeprefix('pii_')}" for rule, count in sorted(rules.items()))
        console.print(f"  {stage_id}: {listed or 'no PII found'}")
    if not counts:
        console.print("  (no clean stage in this run)")
    if yes:
        return
    try:
        confirmed = typer.confirm("Publish the raw inputs anyway?", default=False)
    except typer.Abort:  # no answer: stdin closed or empty
        raise OpenRecipeError("--include-raw needs a confirmation", fix="answer y, or pass --yes") from None
    if not confirmed:
        raise OpenRecipeError("not confirmed: nothing was published", fix="publish without --include-raw") from None


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
