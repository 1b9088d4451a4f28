"""`openrecipe data ...`: clean files with a report, inspect what training will see, build identity sets."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
data_app = typer.Typer(help="Prepare data: clean, inspect, identity sets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data", help="Prepare data: clean with a report, inspect, identity sets.")


def _identity(name: str | None, organization: str | None):
    from openrecipe.config.common import Identity
    from openrecipe.errors import OpenRecipeError

    if (name is None) != (organization is None):
        raise OpenRecipeError("--name and --organization go together")
    return Identity(name=name, organization=organization) if name else None


@data_app.command("clean", help="Read files, validate, dedup, filter, scrub PII; write data.jsonl + report.")
def clean(
    inputs: list[Path] = typer.Argument(
        ..., help="CSV, XLSX, JSONL, JSON (alpaca/ShareGPT/messages), Parquet, Arrow, .txt/.md, dataset_info.json"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (data.jsonl, report.json, report.md)."),
    format: str = typer.Option("auto", "--format", help="auto, messages, alpaca, sharegpt, table or text."),
    on_error: str = typer.Option("strict", "--on-error", help="strict: stop at the first bad row; skip: count it."),
    max_rejected_fraction: float = typer.Option(0.1, "--max-rejected-fraction"),
    unknown_fields: str = typer.Option(
        "ignore", "--unknown-fields", help="Columns no reader uses: ignore (counted in the report) or error."
    ),
    delimiter: str | None = typer.Option(None, "--delimiter", help="CSV delimiter (default: detected)."),
    dataset: str | None = typer.Option(None, "--dataset", help="Entry to read when an input is a dataset_info.json."),
    name: str | None = typer.Option(None, "--name", help="Identity name, fills {{name}} placeholders."),
    organization: str | None = typer.Option(None, "--organization", help="Fills {{author}} placeholders."),
    identity_set: bool = typer.Option(False, "--identity-set", help="Add the built-in identity set."),
    near_dedup: bool = typer.Option(True, "--near-dedup/--no-near-dedup"),
    pii: bool = typer.Option(True, "--pii/--no-pii", help="Replace emails, phones, card/ID numbers."),
    min_chars: int = typer.Option(1, "--min-chars"),
    max_chars: int = typer.Option(20000, "--max-chars"),
    review: bool = typer.Option(
        True, "--review/--no-review", help="Apply <file>.review.json (hand edits from `openrecipe ui`) beside an input."
    ),
) -> None:
    from openrecipe.config.loading import validate_config
    from openrecipe.data.clean import CleanConfig
    from openrecipe.data.config import DataSource
    from openrecipe.data.reviewed import find_patches, prepare_reviewed_data

    sources = [
        validate_config(
            DataSource,
            {
                "path": str(path),
                "format": format,
                "on_error": on_error,
                "max_rejected_fraction": max_rejected_fraction,
                "unknown_fields": unknown_fields,
                "delimiter": delimiter,
                "dataset": dataset,
            },
            source="command line",
        )
        for path in inputs
    ]
    config = CleanConfig(near_dedup=near_dedup, pii=pii, min_chars=min_chars, max_chars=max_chars)
    patches = find_patches(sources, sources, Path) if review else [None] * len(sources)
    summary = prepare_reviewed_data(
        sources,
        patches,
        out,
        clean=config,
        identity=_identity(name, organization),
        include_identity_set=identity_set,
    )
    _print_summary(summary)
    console.print(f"wrote {out / 'data.jsonl'} and {out / 'report.md'}")


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    from openrecipe.provenance.records import hand_edits

    table = Table(title="data sources")
    for column in ("source", "format", "read", "rejected", "kept"):
        table.add_column(column)
    for label, row in summary["sources"].items():
        table.add_row(escape(label), row["format"], str(row["rows_read"]), str(row["rejected"]), str(row["rows_kept"]))
    console.print(table)
    clean = summary["clean"]
    for label, row in summary["sources"].items():
        if row.get("ignored_fields"):
            fields = ", ".join(f"{name} ({count})" for name, count in row["ignored_fields"].items())
            console.print(f"{escape(label)}: ignored fields no reader uses: {escape(fields)}", highlight=False)
    rules = Table(title=f"cleaning: {clean['rows_in']} rows in, {clean['rows_out']} out in {summary['seconds']} s")
    rules.add_column("rule")
    rules.add_column("removed")
    rules.add_column("modified")
    for rule in sorted(set(clean["removed"]) | set(clean["modified"])):
        rules.add_row(rule, str(clean["removed"].get(rule, 0)), str(clean["modified"].get(rule, 0)))
    console.print(rules)
    for label, review in summary.get("review", {}).items():
        console.print(escape(hand_edits(label, review)), highlight=False)


@data_app.command("inspect", help="Stats and one example with trained vs masked tokens coloured.")
def inspect(
    file: Path = typer.Argument(..., help="Any readable data file."),
    model: str = typer.Option("default", "--model", help="Whose tokenizer and chat template to use."),
    format: str = typer.Option("auto", "--format"),
    system: str | None = typer.Option(None, "--system", help="System prompt added to rows without one."),
    row: int = typer.Option(1, "--row", min=1, help="Which row to render (1-based)."),
    name: str | None = typer.Option(None, "--name"),
    organization: str | None = typer.Option(None, "--organization"),
    as_json: bool = typer.Option(False, "--json", help="Print the stats as JSON."),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Built-in template (chatml, llama3, mistral, gemma, qwen) or a .jinja file."
    ),
) -> None:
    from openrecipe.data.config import DataSource
    from openrecipe.data.inspect import data_stats, print_inspection, render_example
    from openrecipe.data.load import load_source
    from openrecipe.errors import OpenRecipeError
    from openrecipe.models.loading import load_tokenizer
    from openrecipe.models.refs import resolve_model_ref
    from openrecipe.models.templates import resolve_chat_template

    loaded = load_source(DataSource(path=str(file), format=format), identity=_identity(name, organization))
    template = resolve_chat_template(chat_template) if chat_template is not None else None
    tokenizer = load_tokenizer(resolve_model_ref(model).with_template(template))
    if row > len(loaded.records):
        raise OpenRecipeError(f"--row {row} is past the end ({len(loaded.records)} rows)")
    stats = data_stats(loaded.records, tokenizer, system)
    if as_json:
        print(json.dumps(stats, ensure_ascii=False, indent=2))
        return
    record = loaded.records[row - 1]
    print_inspection(console, stats, render_example(tokenizer, record, system), record.where)


@data_app.command("identity", help="Write the built-in identity set (train and held-out) as JSONL.")
def identity(
    name: str = typer.Option(..., "--name"),
    organization: str = typer.Option(..., "--organization"),
    out: Path = typer.Option(..., "--out", "-o", help="JSONL file (messages format)."),
    system: str | None = typer.Option(None, "--system"),
    held_out: bool = typer.Option(False, "--held-out", help="Write the held-out evaluation phrasings instead."),
) -> None:
    from openrecipe.config.common import Identity
    from openrecipe.data.identity import identity_eval_items, identity_training_messages
    from openrecipe.utils.fs import atomic_write_text

    who = Identity(name=name, organization=organization)
    if held_out:
        rows = [
            {
                "prompt": item.question,
                "reference": item.answer,
                "language": item.language,
                "negative_of": item.negative_of,
            }
            for item in identity_eval_items(who)
        ]
    else:
        rows = [{"messages": messages} for messages in identity_training_messages(who, system)]
    atomic_write_text(out, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    console.print(f"wrote {len(rows)} rows to {out}")
