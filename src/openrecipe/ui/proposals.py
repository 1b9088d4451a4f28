"""What the cleaner would change in a file, as proposals a person accepts or rejects row by row."""

from __future__ import annotations

import re
from typing import Any

from openrecipe.ui.table import DataTable

_WHERE_LINE = re.compile(r":(\d+)$")


def cleaner_proposals(table: DataTable, limit: int = 500) -> list[dict[str, Any]]:
    """Near/exact duplicates the clean stage would drop, and PII it would replace, per row and cell."""
    from openrecipe.data.clean import CleanConfig, clean_records, scrub_pii
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import load_source

    proposals: list[dict[str, Any]] = []
    line_to_row = {line: row for row, line in enumerate(table.lines)}
    try:
        loaded = load_source(DataSource(path=str(table.path), on_error="skip", max_rejected_fraction=1.0))
    except Exception:
        loaded = None
    if loaded is not None:
        kept, report = clean_records(loaded.records, CleanConfig(pii=False, examples_per_rule=50))
        details = {
            example["where"]: (rule, example.get("detail", ""))
            for rule, examples in report.examples.items()
            for example in examples
        }
        kept_where = {record.where for record in kept}
        for record in loaded.records:
            if record.where in kept_where:
                continue
            match = _WHERE_LINE.search(record.where)
            row = line_to_row.get(int(match.group(1))) if match else None
            if row is None:
                continue
            rule, detail = details.get(record.where, ("near_duplicate", ""))
            similar = _WHERE_LINE.search(detail)
            proposals.append(
                {
                    "key": f"dup:{row}",
                    "kind": "near_duplicate",
                    "rule": rule,
                    "row": row,
                    "line": table.lines[row],
                    "detail": f"{rule}: line {similar.group(1)}" if similar else rule,
                }
            )
            if len(proposals) >= limit:
                return proposals
    cells = {name: table.table[name].to_pylist() for name in table.columns}
    assert table.review is not None
    for row in range(table.num_rows):
        edited = table.review.rows.get(row, {}).get("set", {})
        for column in table.columns:
            text = edited.get(column, cells[column][row]) or ""
            scrubbed, counts = scrub_pii(text, set())
            if counts:
                proposals.append(
                    {
                        "key": f"pii:{row}:{column}",
                        "kind": "pii",
                        "rule": ", ".join(sorted(counts)),
                        "row": row,
                        "line": table.lines[row],
                        "field": column,
                        "old": text,
                        "new": scrubbed,
                    }
                )
                if len(proposals) >= limit:
                    return proposals
    return proposals
