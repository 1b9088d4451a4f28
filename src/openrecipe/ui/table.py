"""Data review like a spreadsheet: a file's rows in an Arrow table, paged, searched and sorted in
milliseconds, with every problem the CLI's readers find pinned to its row and field.

The rows are parsed here only to show them; validation is the CLI's own readers run over the same file,
so the browser shows exactly the CLI's messages.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from openrecipe.data.review import REVIEWABLE, TABLE_SUFFIXES, Review, json_values, read_rows
from openrecipe.data.validation import DataError, Rejections

SUPPORTED = REVIEWABLE
_LINE = re.compile(r":(\d+)$")


@dataclass
class Problem:
    row: int | None
    line: int | None
    field: str | None
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"row": self.row, "line": self.line, "field": self.field, "message": self.message}


class CollectingRejections(Rejections):
    """Skip mode that keeps every rejection, not just a few examples per reason."""

    def __init__(self) -> None:
        super().__init__(on_error="skip", max_rejected_fraction=1.0)
        self.errors: list[DataError] = []

    def reject(self, error: DataError) -> None:
        self.errors.append(error)
        super().reject(error)


def validate_file(path: Path, *, shown_as: str | None = None) -> tuple[list[DataError], str | None, str | None]:
    """Run the CLI's reader over the file: (row errors, file-level error, detected format)."""
    from openrecipe.data.config import DataSource
    from openrecipe.data.load import detect_format
    from openrecipe.data.readers import READERS, ReadContext

    target = path
    if path.suffix.lower() == ".parquet":  # the readers take JSONL; line N is Parquet row N
        import pyarrow.parquet as pq

        target = path.with_name(f".{path.name}.jsonl")
        records = pq.read_table(path).to_pylist()
        target.write_text("".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records))
    rejections = CollectingRejections()
    try:
        name = detect_format(target)
        source = DataSource(path=str(target), on_error="skip", max_rejected_fraction=1.0)
        for _ in READERS.get(name)(target, source, ReadContext(), rejections):
            pass
    except DataError as error:
        return rejections.errors, _without_path(error.format(), target, shown_as or path.name), None
    return rejections.errors, None, name


def _without_path(message: str, path: Path, shown_as: str) -> str:
    return message.replace(str(path), shown_as)


def problem_from_error(error: DataError, columns: list[str], line_to_row: dict[int, int]) -> Problem:
    match = _LINE.search(error.where or "")
    line = int(match.group(1)) if match else None
    column = None
    if error.field:
        top = re.split(r"[\[.]", error.field, maxsplit=1)[0]
        column = top if top in columns else None
    message = f"{error.field}: {error.reason}" if error.field else error.reason
    if error.fix:
        message += f" — {error.fix}"
    return Problem(row=line_to_row.get(line) if line else None, line=line, field=column, message=message)


@dataclass
class Page:
    total: int
    rows: list[dict[str, Any]]
    page: int
    pages: int
    columns: list[str]


@dataclass
class DataTable:
    path: Path
    columns: list[str]
    table: pa.Table
    lines: list[int]
    problems: dict[int, list[Problem]] = field(default_factory=dict)
    file_problem: str | None = None
    format: str | None = None
    review: Review | None = None
    _cache: OrderedDict = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def open(cls, path: Path, *, validate: bool = True) -> DataTable:
        columns, rows, lines = read_rows(path)
        arrays = {name: pa.array([row.get(name, "") for row in rows], type=pa.large_string()) for name in columns}
        table = pa.table({**arrays, "_row": pa.array(range(len(rows)), type=pa.int64())})
        if columns:
            separator = pa.scalar("\x1f", pa.large_string())
            joined = pc.binary_join_element_wise(*[table[name] for name in columns], separator)
            table = table.append_column("_search", pc.utf8_lower(joined))
        result = cls(path=path, columns=columns, table=table, lines=lines, review=Review.load(path))
        if validate:
            result.revalidate()
        return result

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def revalidate(self) -> None:
        errors, self.file_problem, self.format = validate_file(self.path)
        line_to_row = {line: row for row, line in enumerate(self.lines)}
        self.problems = {}
        for error in errors:
            problem = problem_from_error(error, self.columns, line_to_row)
            self.problems.setdefault(problem.row if problem.row is not None else -1, []).append(problem)
        assert self.review is not None
        for row, change in self.review.rows.items():
            if change.get("set"):
                self.problems.pop(row, None)
                self.problems.update(self._validate_row(row))

    def row_values(self, row: int) -> dict[str, str]:
        values = {name: self.table[name][row].as_py() for name in self.columns}
        assert self.review is not None
        values.update(self.review.rows.get(row, {}).get("set", {}))
        return values

    def _validate_row(self, row: int) -> dict[int, list[Problem]]:
        """The reader run on a one-row file holding the edited row; its line is mapped back to the original."""
        values = self.row_values(row)
        suffix = self.path.suffix.lower()
        scratch = self.path.with_name(f".{self.path.name}.row{'.csv' if suffix in TABLE_SUFFIXES else '.jsonl'}")
        if suffix in TABLE_SUFFIXES:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(self.columns)
            writer.writerow([values.get(name, "") for name in self.columns])
            scratch.write_text(buffer.getvalue(), encoding="utf-8")
            scratch_line = 2
        else:
            scratch.write_text(json.dumps(json_values(values), ensure_ascii=False) + "\n", encoding="utf-8")
            scratch_line = 1
        try:
            errors, file_problem, _ = validate_file(scratch)
        finally:
            scratch.unlink(missing_ok=True)
        problems = [problem_from_error(e, self.columns, {scratch_line: row}) for e in errors]
        if file_problem:
            problems.append(Problem(row=row, line=self.lines[row], field=None, message=file_problem))
        for problem in problems:
            problem.line = self.lines[row]
        return {row: problems} if problems else {}

    def edit(self, row: int, changes: dict[str, str]) -> list[Problem]:
        assert self.review is not None
        unknown = set(changes) - set(self.columns)
        if unknown:
            raise ValueError(f"unknown column {sorted(unknown)[0]!r}")
        original = {name: self.table[name][row].as_py() for name in changes}
        self.review.set_cells(row, self.lines[row], changes, original)
        self.problems.pop(row, None)
        self.problems.update(self._validate_row(row))
        self._cache.clear()
        return self.problems.get(row, [])

    def flag(self, row: int, flagged: bool) -> None:
        assert self.review is not None
        self.review.set_flag(row, self.lines[row], flagged)
        self._cache.clear()

    def _indices(self, query: str, sort: str | None, descending: bool, only: str | None) -> pa.Array:
        key = (query, sort, descending, only)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        table = self.table
        mask = None
        if query and "_search" in table.column_names:
            mask = pc.match_substring(table["_search"], query.lower())
        if only == "errors":
            wanted = pa.array(sorted(r for r in self.problems if r >= 0), type=pa.int64())
            mask = _and(mask, pc.is_in(table["_row"], value_set=wanted))
        elif only == "flagged":
            assert self.review is not None
            wanted = pa.array(sorted(self.review.flagged()), type=pa.int64())
            mask = _and(mask, pc.is_in(table["_row"], value_set=wanted))
        if mask is not None:
            table = table.filter(mask)
        if sort in self.columns:
            order = pc.sort_indices(table, sort_keys=[(sort, "descending" if descending else "ascending")])
            indices = pc.take(table["_row"], order)
        else:
            indices = table["_row"]
        indices = indices.combine_chunks() if isinstance(indices, pa.ChunkedArray) else indices
        with self._lock:
            self._cache[key] = indices
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
        return indices

    def page(
        self,
        *,
        query: str = "",
        sort: str | None = None,
        descending: bool = False,
        only: str | None = None,
        page: int = 1,
        size: int = 50,
    ) -> Page:
        indices = self._indices(query.strip(), sort, descending, only)
        total = len(indices)
        pages = max(1, -(-total // size))
        page = min(max(1, page), pages)
        chosen = indices.slice((page - 1) * size, size)
        rows_table = self.table.take(chosen).select([*self.columns, "_row"])
        assert self.review is not None
        rows = []
        for values in rows_table.to_pylist():
            row = values.pop("_row")
            change = self.review.rows.get(row, {})
            values.update(change.get("set", {}))
            rows.append(
                {
                    "row": row,
                    "line": self.lines[row],
                    "values": values,
                    "edited": sorted(change.get("set", {})),
                    "flagged": bool(change.get("flag")),
                    "problems": [p.to_json() for p in self.problems.get(row, [])],
                }
            )
        return Page(total=total, rows=rows, page=page, pages=pages, columns=self.columns)


def _and(mask, other):
    return other if mask is None else pc.and_(mask, other)
