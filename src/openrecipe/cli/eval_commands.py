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
    baseline: str | None = typer.Option(
        None, "--baseline", help="Variant the others are tested against (default: the first)."
    ),
    retrieve: list[Path] = typer.Option(
        [],
        "--retrieve",
        help="Data or documents to index: adds a NAME+retrieval row per model with the top-k passages in the prompt.",
    ),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Passages per prompt with --retrieve."),
    train_data: list[Path] = typer.Option(
        [], "--train-data", help="Training data: checks every test prompt's n-gram overlap with it."
    ),
    chat_template: str | None = typer.Option(
        None,
        "--chat-template",
        help="Render every model's prompts with this template: a built-in name (chatml, llama3, ...) or a .jinja file.",
    ),
) -> None:
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source
    from openrecipe.errors import OpenRecipeError
    from openrecipe.eval.retrieval import RetrievalSettings, Retriever, passages_from_records
    from openrecipe.eval.runner import Variant
    from openrecipe.eval.suite import run_suite
    from openrecipe.eval.testsets import identity_test_set, load_test_set
    from openrecipe.models.refs import resolve_model_ref
    from openrecipe.models.templates import resolve_chat_template

    items = [item for path in tests for item in load_test_set(path)]
    if name and organization:
        items += identity_test_set(name, organization)
    if not items:
        raise OpenRecipeError("no tests given", fix="pass --tests FILE, or --name and --organization")

    def records(paths: list[Path]):
        return [record for path in paths for record in load_source(DataSource(path=str(path))).records]

    retriever = None
    if retrieve:
        settings = RetrievalSettings(top_k=top_k)
        retriever = Retriever(passages_from_records(records(retrieve), max_chars=settings.max_passage_chars), settings)
    template = resolve_chat_template(chat_template) if chat_template is not None else None
    variants = []
    for spec in models:
        label, _, name = spec.rpartition("=") if "=" in spec else (spec, "", spec)
        reference = resolve_model_ref(name).with_template(template)
        label = label or name
        variants.append(Variant(label, reference, system))
        if retriever is not None:
            variants.append(Variant(f"{label}+retrieval", reference, system, retriever=retriever))
    names = [v.name for v in variants]
    if baseline is not None and baseline not in names:
        raise OpenRecipeError(
            f"baseline {baseline!r} is not one of the variants", fix=f"use one of: {', '.join(names)}"
        )
    run_suite(
        variants,
        items,
        out,
        baseline=baseline or names[0],
        console=console,
        batch_size=batch_size,
        use_cache=not no_cache,
        training_texts=[record.content_text() for record in records(train_data)],
    )
