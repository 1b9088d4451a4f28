"""Hand edits of a data file, kept as a reviewable patch next to it: `<file>.review.json`.

The original file is never rewritten. The patch records, per row, the file line, each changed cell's old and
new value, flags, and the decisions on the cleaner's proposals, so a recipe (and `publish`) can show exactly
what was changed by hand. `apply_review` produces the edited rows for the clean stage.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.utils.fs import atomic_write_json
from openrecipe.utils.hashing import sha256_file

PATCH_SUFFIX = ".review.json"


def patch_path(data_file: Path) -> Path:
    return data_file.with_name(data_file.name + PATCH_SUFFIX)


@dataclass
class Review:
    data_file: Path
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)
    _source_digest: tuple[int, str] | None = None

    @classmethod
    def load(cls, data_file: Path) -> Review:
        path = patch_path(data_file)
        if not path.is_file():
            return cls(data_file)
        body = json.loads(path.read_text(encoding="utf-8"))
        return cls(
            data_file,
            rows={int(row): change for row, change in body.get("rows", {}).items()},
            proposals=body.get("proposals", {}),
            output=body.get("output", {}),
        )

    def save(self) -> None:
        stamp = self.data_file.stat().st_mtime_ns
        if self._source_digest is None or self._source_digest[0] != stamp:
            self._source_digest = (stamp, sha256_file(self.data_file))
        atomic_write_json(
            patch_path(self.data_file),
            {
                "file": self.data_file.name,
                "sha256": self._source_digest[1],
                "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "rows": {str(row): change for row, change in sorted(self.rows.items())},
                "proposals": self.proposals,
                "output": self.output,
            },
        )

    def record_output(self, path: Path) -> None:
        """Pin the reviewed file this patch produced, so a run's input hash leads back to the hand edits."""
        self.output = {"file": path.name, "sha256": sha256_file(path)}
        self.save()

    def set_cells(self, row: int, line: int, changes: dict[str, str], original: dict[str, str]) -> None:
        change = self.rows.setdefault(row, {"line": line})
        for column, value in changes.items():
            was = change.setdefault("was", {}).get(column, original[column])
            if value == was:
                change.get("set", {}).pop(column, None)
                change["was"].pop(column, None)
            else:
                change.setdefault("set", {})[column] = value
                change["was"][column] = was
        self._tidy(row)
        self.save()

    def set_flag(self, row: int, line: int, flagged: bool) -> None:
        change = self.rows.setdefault(row, {"line": line})
        if flagged:
            change["flag"] = True
        else:
            change.pop("flag", None)
        self._tidy(row)
        self.save()

    def decide(self, key: str, proposal: dict[str, Any], decision: str) -> None:
        assert decision in ("accepted", "rejected")
        self.proposals[key] = {**proposal, "decision": decision}
        self.save()

    def flagged(self) -> set[int]:
        return {row for row, change in self.rows.items() if change.get("flag")}

    def _tidy(self, row: int) -> None:
        change = self.rows[row]
        if not change.get("set"):
            change.pop("set", None)
            change.pop("was", None)
        if set(change) == {"line"}:
            del self.rows[row]


def apply_review(data_file: Path, columns: list[str], rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows with hand edits and accepted proposals applied; flagged rows and accepted duplicates dropped."""
    review = Review.load(data_file)
    dropped = review.flagged()
    edits = {row: dict(change.get("set", {})) for row, change in review.rows.items()}
    for proposal in review.proposals.values():
        if proposal.get("decision") != "accepted":
            continue
        if proposal["kind"] == "near_duplicate":
            dropped.add(proposal["row"])
        elif proposal["kind"] == "pii":
            edits.setdefault(proposal["row"], {}).setdefault(proposal["field"], proposal["new"])
    out = []
    for index, row in enumerate(rows):
        if index in dropped:
            continue
        out.append({**row, **edits.get(index, {})})
    return out


def write_reviewed(data_file: Path, out: Path) -> Path:
    """The reviewed rows as a new file of the same kind (CSV stays CSV, the rest become JSONL)."""
    from openrecipe.ui.table import _json_values, read_rows

    columns, rows, _ = read_rows(data_file)
    reviewed = apply_review(data_file, columns, rows)
    if data_file.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(reviewed)
        out.write_text(buffer.getvalue(), encoding="utf-8")
    else:
        out.write_text("".join(json.dumps(_json_values(r), ensure_ascii=False) + "\n" for r in reviewed))
    return out
