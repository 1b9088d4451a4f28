"""`openrecipe eval`: a per-domain leaderboard of any models on any test files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

console = Console()


def register(app: typer.Typer) -> None:
    app.command(name="eval", help="Score models per domain on test files; writes a leaderboard.")(evaluate)


def evaluate(
    models: list[str] = typer.Argument(..., help="Model references; NAME=REF sets the row name."),
    tests: list[Path] = typer.Option([], "--tests", "-t", help="Test files (JSONL, CSV, YAML, .txt = perplexity)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for leaderboard.json/.md and predictions.jsonl."),
    system: str | None = typer.Option(None, "--system", help="System prompt for every variant."),
    name: str | None = typer.Option(None, "--name", help="Identity name: adds the held-out identity test."),
    organization: str | None = typer.Option(None, "--organization"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore cached results."),
) -> None:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.eval.leaderboard import build_leaderboard, rich_table, write_leaderboard
    from openrecipe.eval.runner import Variant, evaluate_variant
    from openrecipe.eval.testsets import identity_test_set, load_test_set

    items = [item for path in tests for item in load_test_set(path)]
    if name and organization:
        items += identity_test_set(name, organization)
    if not items:
        raise OpenRecipeError("no tests given", fix="pass --tests FILE, or --name and --organization")
    outcomes = []
    for spec in models:
        label, _, reference = spec.rpartition("=") if "=" in spec else (spec, "", spec)
        outcome = evaluate_variant(
            Variant(label or reference, reference, system),
            items,
            batch_size=batch_size,
            use_cache=not no_cache,
        )
        console.print(f"{label or reference}: {'cached' if outcome['cache_hit'] else str(outcome['seconds']) + ' s'}")
        outcomes.append(outcome)
    board = build_leaderboard(outcomes)
    write_leaderboard(out, board, outcomes)
    console.print(rich_table(board))
