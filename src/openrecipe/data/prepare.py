"""Read sources, clean them together, and write `data.jsonl` with a report of what was removed and why."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openrecipe.config.common import Identity
from openrecipe.data.clean import CleanConfig, Cleaner, CleanReport, Spill
from openrecipe.data.config import DataSource
from openrecipe.data.identity import identity_training_messages
from openrecipe.data.load import open_source
from openrecipe.data.records import Record
from openrecipe.data.validation import Rejections
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
    keep_duplicates: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Everything the user gave is read (strictly), cleaned, and accounted for in the report. Sources are
    streamed: memory stays bounded however large they are (see `Cleaner`). `keep_duplicates` names rows
    (by `where`) a person kept although they duplicate another."""
    started = time.perf_counter()
    clean = clean or CleanConfig()
    labels = [source.label for source in sources]
    duplicates = {label for label in labels if labels.count(label) > 1}
    if duplicates:
        raise OpenRecipeError(
            f"two data sources are both named {sorted(duplicates)[0]!r}",
            fix="give them distinct `name:` values",
        )
    if include_identity_set and identity is None:
        raise OpenRecipeError(
            "identity_set is on but the recipe has no identity",
            fix="add `identity: {name: ..., organization: ...}` to the recipe",
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir)
    per_source: dict[str, Any] = {}
    kept_per_source: Counter = Counter()
    cleaner = Cleaner(clean, Spill(out_dir / f".spill-{os.getpid()}.jsonl.tmp"), keep_duplicates)
    try:
        for source in sources:
            stream = open_source(source, identity=identity, base_dir=base_dir)
            rows_read, label = 0, source.label
            for record in stream.records:
                record.extra["source"] = label
                rows_read += 1
                cleaner.add(record)
            per_source[source.label] = {
                "path": source.path,
                "format": stream.format,
                "rows_read": rows_read,
                **stream.rejections.to_json(),
            }
        if include_identity_set:
            messages = identity_training_messages(identity)
            for index, conversation in enumerate(messages):
                cleaner.add(
                    Record(messages=conversation, where=f"identity-set:{index + 1}", extra={"source": IDENTITY_SOURCE})
                )
            per_source[IDENTITY_SOURCE] = {
                "path": "(built-in)",
                "format": "identity",
                "rows_read": len(messages),
                **Rejections().to_json(),
            }
        with atomic_text_writer(out_dir / "data.jsonl") as handle:
            for record in cleaner.kept():
                kept_per_source[record.extra.get("source")] += 1
                handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")
    finally:
        cleaner.close()
    for label in per_source:
        per_source[label]["rows_kept"] = kept_per_source[label]
    summary = {
        "sources": per_source,
        "clean": cleaner.report.to_json(),
        "config": clean.model_dump(),
        "seconds": round(time.perf_counter() - started, 2),
    }
    atomic_write_json(out_dir / "report.json", summary)
    atomic_write_text(out_dir / "report.md", render_markdown(per_source, cleaner.report, summary["seconds"]))
    return summary


def remove_stale_temporaries(out_dir: Path) -> None:
    """Spill and partial output files of an interrupted earlier run (nothing else starts with these names)."""
    for pattern in (".spill-*.jsonl.tmp", ".spill-*.jsonl.sig", ".data.jsonl.*.tmp"):
        for path in out_dir.glob(pattern):
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_text_writer(path: Path) -> Iterator[Any]:
    """Stream text into a temporary sibling; it replaces `path` only when the block finishes."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_markdown(per_source: dict[str, Any], report: CleanReport, seconds: float | None = None) -> str:
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    lines = [
        "# Data report",
        "",
        f"Rows in: **{report.rows_in}**, rows out: **{report.rows_out}**{took}",
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
    ignored = [
        (label, name, count) for label, row in per_source.items() for name, count in row["ignored_fields"].items()
    ]
    if ignored:
        lines += ["", "## Fields no reader uses (ignored)", "", "| source | field | rows |", "|---|---|---|"]
        lines += [f"| {label} | {name} | {count} |" for label, name, count in ignored]
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
                where, tools = f"{path}:{number}", row.get("tools")
                records.append(Record(messages=row["messages"], where=where, extra={"source": source}, tools=tools))
            else:
                records.append(Record(text=row["text"], where=f"{path}:{number}", extra={"source": source}))
    return records
