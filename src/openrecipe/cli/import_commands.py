"""`openrecipe import ...`: turn another tool's training config into a recipe, listing what has no equivalent."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
import_app = typer.Typer(help="Turn a LLaMA-Factory or axolotl config into a recipe.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(import_app, name="import", help="Turn a LLaMA-Factory or axolotl config into a recipe.")


def _out(config: Path, out: Path | None) -> Path:
    return out if out is not None else config.with_name(f"{config.stem}.openrecipe.yaml")


def _report(imported, out: Path) -> None:
    console.print(f"wrote {escape(str(out))}")
    if imported.unmapped:
        console.print(f"[yellow]{len(imported.unmapped)} setting(s) with no equivalent[/yellow] (listed in the file):")
        for key, why in sorted(imported.unmapped.items()):
            console.print(f"  {escape(key)}: {escape(why)}", highlight=False)
    for note in imported.notes:
        console.print(f"  note: {escape(note)}", highlight=False)
    console.print(f"next: openrecipe validate {escape(str(out))} && openrecipe run {escape(str(out))}")


@import_app.command("llamafactory", help="Import a LLaMA-Factory training YAML (sft or pt).")
def llamafactory(
    config: Path = typer.Argument(..., help="The YAML given to `llamafactory-cli train`."),
    dataset_info: Path | None = typer.Option(
        None, "--dataset-info", help="dataset_info.json (default: dataset_dir/dataset_info.json next to the config)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Recipe to write (default: CONFIG.openrecipe.yaml)."),
) -> None:
    from openrecipe.importers.common import write_recipe
    from openrecipe.importers.llamafactory import import_llamafactory

    target = _out(config, out)
    imported = import_llamafactory(config, target, dataset_info)
    _report(imported, write_recipe(imported, target, config, "LLaMA-Factory"))


@import_app.command("axolotl", help="Import an axolotl training YAML.")
def axolotl(
    config: Path = typer.Argument(..., help="The YAML given to `axolotl train`."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Recipe to write (default: CONFIG.openrecipe.yaml)."),
) -> None:
    from openrecipe.importers.axolotl import import_axolotl
    from openrecipe.importers.common import write_recipe

    target = _out(config, out)
    imported = import_axolotl(config, target)
    _report(imported, write_recipe(imported, target, config, "axolotl"))
