"""Stats of a data file and one rendered example with trained (green) vs masked (dim) tokens."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from openrecipe.data.records import Record
from openrecipe.data.tokenize import IGNORE_INDEX, tokenize_chat, with_system_prompt

HISTOGRAM_EDGES = (32, 64, 128, 256, 512, 1024, 2048, 4096)


def data_stats(records: list[Record], tokenizer, system_prompt: str | None = None) -> dict[str, Any]:
    roles: Counter = Counter()
    lengths: list[int] = []
    trainable = 0
    for record in records:
        if record.messages is not None:
            messages = with_system_prompt(record.messages, system_prompt)
            roles.update(message["role"] for message in messages)
            ids, labels = tokenize_chat(tokenizer, messages, tools=record.tools)
            trainable += sum(label != IGNORE_INDEX for label in labels)
        else:
            ids = tokenizer(record.text or "", add_special_tokens=False)["input_ids"]
            trainable += len(ids)
        lengths.append(len(ids))
    histogram: Counter = Counter()
    for length in lengths:
        bucket = next((f"≤{edge}" for edge in HISTOGRAM_EDGES if length <= edge), f">{HISTOGRAM_EDGES[-1]}")
        histogram[bucket] += 1
    ordered = {f"≤{edge}": histogram[f"≤{edge}"] for edge in HISTOGRAM_EDGES}
    ordered[f">{HISTOGRAM_EDGES[-1]}"] = histogram[f">{HISTOGRAM_EDGES[-1]}"]
    return {
        "rows": len(records),
        "tokens": sum(lengths),
        "trainable_tokens": trainable,
        "max_tokens": max(lengths, default=0),
        "mean_tokens": round(sum(lengths) / len(lengths), 1) if lengths else 0,
        "length_histogram": {key: value for key, value in ordered.items() if value},
        "roles": dict(roles),
    }


def render_example(tokenizer, record: Record, system_prompt: str | None = None) -> Text:
    """Each token coloured: green = trained on, dim = masked (prompt, system, template)."""
    text = Text()
    if record.messages is None:
        text.append(record.text or "", style="green")
        return text
    ids, labels = tokenize_chat(tokenizer, with_system_prompt(record.messages, system_prompt), tools=record.tools)
    for token_id, label in zip(ids, labels, strict=True):
        piece = tokenizer.decode([token_id])
        text.append(piece, style="bold green" if label != IGNORE_INDEX else "dim")
    return text


def print_inspection(console: Console, stats: dict[str, Any], example: Text, where: str) -> None:
    table = Table(title="data", show_header=False)
    for key in ("rows", "tokens", "trainable_tokens", "mean_tokens", "max_tokens"):
        table.add_row(key, str(stats[key]))
    table.add_row("roles", ", ".join(f"{role} {count}" for role, count in stats["roles"].items()) or "-")
    table.add_row("lengths", "  ".join(f"{bucket}: {count}" for bucket, count in stats["length_histogram"].items()))
    console.print(table)
    console.print(f"[bold]example[/bold] ({where}) — [bold green]trained[/bold green] / [dim]masked[/dim]:")
    console.print(example)
