"""Read sources, clean them together, and write `data.jsonl` with a report of what was removed and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.config.common import Identity
from openrecipe.data.clean import CleanConfig, CleanReport, clean_records
from openrecipe.data.config import DataSource
from openrecipe.data.identity import identity_training_messages
from openrecipe.data.load import load_source
from openrecipe.data.records import Record
from openrecipe.errors import OpenRecipeError
from openrecipe.utils.fs import atomic_write_json, atomic_write_text

IDENTITY_SOURCE = "identity"


def prepare_data(
    sources: list[DataSource],
    out_dir: Path,
    *,
    clean: CleanConfig | None = None,
    identity: Identity | None = None,
    include_identity_set: bool = False,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Everything the user gave is read (strictly), cleaned, and accounted for in the report."""
    clean = clean or CleanConfig()
    records: list[Record] = []
    per_source: dict[str, Any] = {}
    labels = [source.label for source in sources]
    duplicates = {label for label in labels if labels.count(label) > 1}
    if duplicates:
        raise OpenRecipeError(
            f"two data sources are both named {sorted(duplicates)[0]!r}",
            fix="give them distinct `name:` values",
        )
    for source in sources:
        loaded = load_source(source, identity=identity, base_dir=base_dir)
        for record in loaded.records:
            record.extra["source"] = source.label
        records += loaded.records
        per_source[source.label] = {
            "path": source.path,
            "format": loaded.format,
            "rows_read": len(loaded.records),
            **loaded.rejections.to_json(),
        }
    if include_identity_set:
        if identity is None:
            raise OpenRecipeError(
                "identity_set is on but the recipe has no identity",
                fix="add `identity: {name: ..., organization: ...}` to the recipe",
            )
        identity_records = [
            Record(messages=messages, where=f"identity-set:{index + 1}", extra={"source": IDENTITY_SOURCE})
            for index, messages in enumerate(identity_training_messages(identity))
        ]
        records += identity_records
        per_source[IDENTITY_SOURCE] = {
            "path": "(built-in)",
            "format": "identity",
            "rows_read": len(identity_records),
            "rejected": 0,
            "by_reason": {},
            "examples": {},
        }
    kept, report = clean_records(records, clean)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        out_dir / "data.jsonl",
        "".join(json.dumps(record.to_json(), ensure_ascii=False) + "\n" for record in kept),
    )
    for label in per_source:
        per_source[label]["rows_kept"] = sum(1 for record in kept if record.extra.get("source") == label)
    summary = {"sources": per_source, "clean": report.to_json(), "config": clean.model_dump()}
    atomic_write_json(out_dir / "report.json", summary)
    atomic_write_text(out_dir / "report.md", render_markdown(per_source, report))
    return summary


def render_markdown(per_source: dict[str, Any], report: CleanReport) -> str:
    lines = [
        "# Data report",
        "",
        f"Rows in: **{report.rows_in}**, rows out: **{report.rows_out}**",
        "",
        "| source | format | read | rejected | kept |",
        "|---|---|---|---|---|",
    ]
    for label, row in per_source.items():
        lines.append(f"| {label} | {row['format']} | {row['rows_read']} | {row['rejected']} | {row['rows_kept']} |")
    lines += ["", "| rule | removed | modified |", "|---|---|---|"]
    for rule in sorted(set(report.removed) | set(report.modified)):
        lines.append(f"| {rule} | {report.removed.get(rule, 0)} | {report.modified.get(rule, 0)} |")
    for label, row in per_source.items():
        for reason, count in row["by_reason"].items():
            lines.append(f"| rejected ({label}): {reason} | {count} | |")
    lines += ["", "## Examples"]
    for rule, examples in report.examples.items():
        lines.append(f"\n### {rule}")
        lines += [f"- `{e['where']}` {e.get('detail', '')}: {e['text']}" for e in examples]
    return "\n".join(lines) + "\n"


def read_prepared(path: Path) -> list[Record]:
    """Read a `data.jsonl` written by prepare_data (chat or text rows, with their source)."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            row = json.loads(line)
            source = row.pop("source", "data")
            if "messages" in row:
                records.append(Record(messages=row["messages"], where=f"{path}:{number}", extra={"source": source}))
            else:
                records.append(Record(text=row["text"], where=f"{path}:{number}", extra={"source": source}))
    return records
