"""Test sets in JSONL, CSV or YAML: prompt (or messages), references, metric, domain — validated with
the same FILE:LINE errors as training data."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from openrecipe.data.jsonio import iter_jsonl, read_text_strict
from openrecipe.data.validation import DataError, Rejections, validate_messages
from openrecipe.eval.items import TestItem
from openrecipe.eval.metrics import METRICS

ALLOWED = {
    "id",
    "prompt",
    "messages",
    "reference",
    "references",
    "metric",
    "domain",
    "choices",
    "answer",
    "tolerance",
    "max_new_tokens",
    "text",
    "system",
    "negative_of",
    "language",
}


def _item(row: Any, where: str, default_domain: str, number: int) -> TestItem:
    if not isinstance(row, dict):
        raise DataError(f"row must be an object, got {type(row).__name__}", where=where)
    extra = set(row) - ALLOWED
    if extra:
        raise DataError(f"extra field {sorted(extra)[0]!r}", where=where, fix=f"allowed: {', '.join(sorted(ALLOWED))}")
    metric = row.get("metric", "contains" if "text" not in row else "perplexity")
    if metric not in METRICS:
        raise DataError(METRICS.unknown_message(str(metric)), where=where, field="metric")
    references = row.get("references", row.get("reference", []))
    if isinstance(references, str | int | float):
        references = [references]
    if not isinstance(references, list) or not all(isinstance(r, str | int | float) for r in references):
        raise DataError("must be a string or a list of strings", where=where, field="references")
    references = [str(r) for r in references]
    item = TestItem(
        id=str(row.get("id", number)),
        domain=str(row.get("domain", default_domain)),
        metric=metric,
        references=references,
        where=where,
        negative_of=row.get("negative_of"),
    )
    if metric == "perplexity":
        if not isinstance(row.get("text"), str) or not row["text"].strip():
            raise DataError("perplexity items need a non-empty `text`", where=where, field="text")
        item.text = row["text"]
        return item
    if "messages" in row:
        item.messages = validate_messages(row["messages"] + [{"role": "assistant", "content": "-"}], where=where)[:-1]
    elif isinstance(row.get("prompt"), str) and row["prompt"].strip():
        item.messages = ([{"role": "system", "content": row["system"]}] if row.get("system") else []) + [
            {"role": "user", "content": row["prompt"]}
        ]
    else:
        raise DataError("needs a non-empty `prompt` or `messages`", where=where, field="prompt")
    if metric == "choice":
        choices = row.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
            raise DataError("choice items need `choices`: a list of at least two strings", where=where, field="choices")
        item.choices = choices
        answer = row.get("answer", references[0] if references else None)
        if answer not in choices:
            raise DataError("`answer` must be one of the choices", where=where, field="answer")
        item.references = [answer]
    elif metric != "judge" and not references:
        raise DataError("needs at least one reference", where=where, field="references")
    if metric == "numeric":
        try:
            [float(r) for r in references]
        except ValueError:
            raise DataError("numeric references must be numbers", where=where, field="references") from None
        item.tolerance = float(row.get("tolerance", 0.0))
    if "max_new_tokens" in row:
        item.max_new_tokens = int(row["max_new_tokens"])
    return item


def load_test_set(path: Path, *, domain: str | None = None) -> list[TestItem]:
    """Every row validated; the first bad one stops with FILE:LINE and the reason."""
    if not path.is_file():
        raise DataError("test file not found", where=str(path), fix="check the path")
    default_domain = domain or path.stem
    rejections = Rejections()
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = list(iter_jsonl(path, rejections))
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(read_text_strict(path)))
        rows = [(f"{path}:{reader.line_num}", {k: v for k, v in row.items() if v not in (None, "")}) for row in reader]
        for _, row in rows:
            if "choices" in row:
                row["choices"] = [c.strip() for c in row["choices"].split("|")]
    elif suffix in (".yaml", ".yml"):
        from openrecipe.config.loading import load_yaml_with_lines

        data, lines = load_yaml_with_lines(path)
        if isinstance(data, dict):
            data = data.get("items", data.get("tests"))
        if not isinstance(data, list):
            raise DataError("expected a list of test items (or `items:` holding one)", where=str(path))
        rows = [(f"{path}:{lines.get((index,), 0)}", row) for index, row in enumerate(data)]
    elif suffix == ".txt":
        rows = [
            (str(path), {"text": part, "metric": "perplexity"})
            for part in read_text_strict(path).split("\n\n")
            if part.strip()
        ]
    else:
        raise DataError(
            f"unsupported test file type {suffix!r}", where=str(path), fix="use .jsonl, .csv, .yaml or .txt"
        )
    items = [_item(row, where, default_domain, number) for number, (where, row) in enumerate(rows, start=1)]
    if not items:
        raise DataError("no test items", where=str(path))
    return items


def test_set_digest(items: list[TestItem]) -> str:
    from openrecipe.utils.hashing import sha256_json

    return sha256_json([item.__dict__ for item in items])


def identity_test_set(name: str, organization: str) -> list[TestItem]:
    """Held-out identity phrasings (never trained on) and negative probes, as test items."""
    from openrecipe.config.common import Identity
    from openrecipe.data.identity import identity_eval_items

    items = []
    for number, probe in enumerate(identity_eval_items(Identity(name=name, organization=organization)), start=1):
        items.append(
            TestItem(
                id=f"identity-{probe.language}-{number}",
                domain="identity",
                metric="identity",
                messages=[{"role": "user", "content": probe.question}],
                references=[name, organization],
                where=f"identity:{number}",
                negative_of=probe.negative_of,
                max_new_tokens=48,
            )
        )
    return items
