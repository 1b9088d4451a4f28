"""Hand edits of a data file, kept as a reviewable patch next to it (`<file>.review.json`), and applied by
the clean stage.

The original file is never rewritten. The patch records the SHA-256 of the file it was made against and,
per row (numbered as `read_rows` numbers them), the file line, each changed cell's old and new value,
flags, and the decisions on the cleaner's proposals. The workbench writes it (`Review`); the clean stage
checks the hash and reads a reviewed copy of the file (`openrecipe.data.reviewed`), so a run, its manifest and a
published bundle record exactly what was changed by hand.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from openrecipe.config.base import StrictModel
from openrecipe.data.clean import PII_PATTERNS, scrub_pii
from openrecipe.errors import OpenRecipeError
from openrecipe.utils.fs import atomic_write_json
from openrecipe.utils.hashing import sha256_file

PATCH_SUFFIX = ".review.json"
TABLE_SUFFIXES = (".csv", ".xlsx", ".xlsm")
REVIEWABLE = (".csv", ".xlsx", ".xlsm", ".jsonl", ".json", ".parquet")


def patch_path(data_file: Path) -> Path:
    return data_file.with_name(data_file.name + PATCH_SUFFIX)


def stale_patch_path(data_file: Path, sha256: str) -> Path:
    return data_file.with_name(f"{data_file.name}.{sha256[:12]}{PATCH_SUFFIX}")


# --- the rows as a reviewer sees them -------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def csv_delimiter(text: str, path: Path, delimiter: str | None = None) -> str:
    """The delimiter the CLI's table reader would use for this file."""
    from openrecipe.data.readers import detect_delimiter

    return delimiter or detect_delimiter(text.split("\n", 1)[0], path)


def read_rows(path: Path, *, delimiter: str | None = None) -> tuple[list[str], list[dict[str, str]], list[int]]:
    """(columns, rows as strings, the line or sheet row each came from) — numbered as the readers number them."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        from openrecipe.data.jsonio import read_text_strict

        text = read_text_strict(path)
        reader = csv.reader(io.StringIO(text), delimiter=csv_delimiter(text, path, delimiter))
        header = [column.strip() for column in next(reader, [])]
        rows, lines = [], []
        for row in reader:
            if all(not cell.strip() for cell in row):
                continue
            rows.append({name: row[i] if i < len(row) else "" for i, name in enumerate(header)})
            lines.append(reader.line_num)
        return header, rows, lines
    if suffix in (".xlsx", ".xlsm"):
        header, numbered = _sheet_rows(path)
        rows = [{name: _sheet_cell(row, i) for i, name in enumerate(header)} for _, row in numbered]
        return header, rows, [number for number, _ in numbered]
    return _json_rows(json_values_of(path))


def _sheet_rows(path: Path) -> tuple[list[str], list[tuple[int, tuple[Any, ...]]]]:
    from openpyxl import load_workbook

    sheet = load_workbook(path, read_only=True, data_only=True).worksheets[0]
    values = sheet.iter_rows(values_only=True)
    header = ["" if cell is None else str(cell).strip() for cell in next(values, ())]
    numbered = [
        (number, row)
        for number, row in enumerate(values, start=2)
        if not all(cell is None or str(cell).strip() == "" for cell in row)
    ]
    return header, numbered


def _sheet_cell(row: tuple[Any, ...], index: int) -> str:
    value = row[index] if index < len(row) else None
    return "" if value is None else str(value)  # as the table reader reads it


def json_values_of(path: Path) -> list[tuple[int, Any]]:
    """(line, parsed value) per row of a JSONL, JSON-array or Parquet file; unparseable lines as `_raw`."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(enumerate(pq.read_table(path).to_pylist(), start=1))
    if suffix == ".json" and path.read_bytes().lstrip().startswith(b"["):
        return list(enumerate(json.loads(path.read_text(encoding="utf-8-sig")), start=1))
    numbered = []
    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError:
                numbered.append((number, {"_raw": line.rstrip("\n")}))
    return numbered


def _json_rows(numbered: list[tuple[int, Any]]) -> tuple[list[str], list[dict[str, str]], list[int]]:
    columns: dict[str, None] = {}
    rows, lines = [], []
    for number, value in numbered:
        row = value if isinstance(value, dict) else {"_raw": value}
        for key in row:
            columns.setdefault(key, None)
        rows.append({key: _cell(cell) for key, cell in row.items()})
        lines.append(number)
    return list(columns), rows, lines


def json_values(values: dict[str, str]) -> dict[str, Any]:
    """Cells of a JSON row back to JSON values (lists and objects were shown as JSON text)."""
    return {key: json_value(text, None) for key, text in values.items()}


def json_value(text: str, original: Any) -> Any:
    """An edited cell as JSON: text stays text where the original was text; lists, objects and numbers parse."""
    if isinstance(original, str):
        return text
    stripped = text.strip()
    if original is not None or stripped.startswith(("[", "{")):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError:
            pass
    return text


# --- the patch file ---------------------------------------------------------------------------------------


class RowChange(StrictModel):
    line: int
    set: dict[str, str] = Field(default_factory=dict)
    was: dict[str, str] = Field(default_factory=dict)
    flag: bool = False


class Decision(StrictModel):
    kind: Literal["near_duplicate", "pii"]
    row: int = Field(ge=0)
    line: int | None = None
    field: str | None = None
    old: str | None = None
    new: str | None = None
    detail: str | None = None
    decision: Literal["accepted", "rejected"]


class PatchFile(StrictModel):
    file: str
    sha256: str
    updated: str | None = None
    rows: dict[int, RowChange] = Field(default_factory=dict)
    proposals: dict[str, Decision] = Field(default_factory=dict)


_PATCH = TypeAdapter(PatchFile)


def read_patch(path: Path) -> PatchFile:
    """A patch file, validated; a broken one is an error naming the file and the field."""
    try:
        return _PATCH.validate_json(path.read_bytes())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise OpenRecipeError(
            f"not a valid review patch ({where}: {first['msg']})",
            where=str(path),
            fix="restore it from version control, or delete it to use the file without hand edits",
        ) from None


@dataclass
class Review:
    """The workbench's live view of a patch: plain dicts it edits in place and saves after every change."""

    data_file: Path
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)
    set_aside: str | None = None  # a patch for an earlier version of the file, renamed when this one was opened
    _source_digest: tuple[int, str] | None = None

    @classmethod
    def load(cls, data_file: Path) -> Review:
        """The patch beside the file; one made for another version of the file is set aside (renamed to
        `<file>.<its sha256[:12]>.review.json`) and the review starts afresh."""
        path = patch_path(data_file)
        if not path.is_file():
            return cls(data_file)
        patch = read_patch(path)
        digest = (data_file.stat().st_mtime_ns, sha256_file(data_file))
        if patch.sha256 != digest[1]:
            aside = stale_patch_path(data_file, patch.sha256)
            path.replace(aside)
            return cls(data_file, set_aside=aside.name, _source_digest=digest)
        return cls(
            data_file,
            rows={
                row: change.model_dump(exclude_defaults=True) | {"line": change.line}
                for row, change in patch.rows.items()
            },
            proposals={key: d.model_dump(exclude_none=True) for key, d in patch.proposals.items()},
            _source_digest=digest,
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
            },
        )

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


# --- applying a patch -----------------------------------------------------------------------------------


@dataclass
class ReviewPlan:
    """What a patch does to a file: cell values per row, rows to drop, PII and duplicates to keep, the counts."""

    edits: dict[int, dict[str, str]] = field(default_factory=dict)
    dropped: set[int] = field(default_factory=set)
    keep_pii: set[str] = field(default_factory=set)
    kept_duplicates: set[int] = field(default_factory=set)  # duplicate proposals a person rejected
    counts: Counter = field(default_factory=Counter)
    written: dict[int, int] = field(default_factory=dict)  # row -> the line it was written on


def plan_review(patch: PatchFile, rows: list[dict[str, str]]) -> ReviewPlan:
    """Hand edits first, then accepted PII replacements on the cells they were proposed for; flagged rows and
    accepted duplicates are dropped; the text of rejected PII proposals is kept as it is by the cleaner."""
    plan = ReviewPlan()
    for row, change in patch.rows.items():
        _check_row(row, rows)
        if change.set:
            plan.edits[row] = dict(change.set)
            plan.counts["edited_rows"] += 1
            plan.counts["edited_cells"] += len(change.set)
        if change.flag:
            plan.dropped.add(row)
            plan.counts["flagged_removed"] += 1
    for decision in patch.proposals.values():
        _check_row(decision.row, rows)
        if decision.kind == "near_duplicate":
            if decision.decision == "accepted" and decision.row not in plan.dropped:
                plan.dropped.add(decision.row)
                plan.counts["duplicates_removed"] += 1
            elif decision.decision == "rejected":
                plan.kept_duplicates.add(decision.row)
                plan.counts["duplicates_rejected"] += 1
            continue
        if decision.decision == "rejected":
            plan.keep_pii.update(pii_found(decision.old or ""))
            plan.counts["pii_rejected"] += 1
            continue
        assert decision.field is not None and decision.new is not None
        current = plan.edits.get(decision.row, {}).get(decision.field, rows[decision.row].get(decision.field, ""))
        if current != decision.old:  # the cell was edited after the decision: the hand edit wins
            plan.counts["pii_stale"] += 1
            continue
        plan.edits.setdefault(decision.row, {})[decision.field] = decision.new
        plan.counts["pii_accepted"] += 1
    return plan


def _check_row(row: int, rows: list[dict[str, str]]) -> None:
    if row >= len(rows):
        raise OpenRecipeError(
            f"the review patch names row {row}, but the file has {len(rows)} rows",
            fix="open the file in the workbench (`openrecipe ui`) and review it again",
        )


def pii_found(text: str) -> set[str]:
    """The strings in `text` the cleaner would replace (what a rejected PII proposal keeps)."""
    return {
        match.group(0)
        for _, pattern, _ in PII_PATTERNS
        for match in pattern.finditer(text)
        if scrub_pii(match.group(0), set())[1]
    }
