"""The clean stage's side of hand edits: which sources carry a review patch, the check that a patch was
made for the file as it is now, and the reviewed copy the stage reads instead (each row on its original
line, so every message still names the original's lines)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from openrecipe.config.references import InputPath, PathRef
from openrecipe.data.clean import CleanConfig
from openrecipe.data.config import DataSource
from openrecipe.data.review import (
    PATCH_SUFFIX,
    REVIEWABLE,
    TABLE_SUFFIXES,
    PatchFile,
    ReviewPlan,
    csv_delimiter,
    json_value,
    json_values_of,
    patch_path,
    plan_review,
    read_patch,
    read_rows,
    stale_patch_path,
)
from openrecipe.errors import OpenRecipeError
from openrecipe.utils.fs import atomic_write_json, atomic_write_text
from openrecipe.utils.hashing import sha256_file


def reviewed_name(data_file: Path) -> str:
    """CSV and XLSX become CSV, the JSON kinds become JSONL."""
    suffix = ".csv" if data_file.suffix.lower() in TABLE_SUFFIXES else ".jsonl"
    return data_file.stem + suffix


def write_reviewed(data_file: Path, patch: PatchFile, out: Path, *, delimiter: str | None = None) -> ReviewPlan:
    """The file with the patch applied. Each row stays on its original line (a dropped row leaves a blank
    line, which every reader skips), so messages about the copy name the original's lines."""
    columns, rows, lines = read_rows(data_file, delimiter=delimiter)
    plan = plan_review(patch, rows)
    suffix = data_file.suffix.lower()
    if suffix == ".csv":
        text = _reviewed_csv(data_file, plan, delimiter)
    elif suffix in (".xlsx", ".xlsm"):
        text = _reviewed_sheet(data_file, columns, rows, lines, plan)
    else:
        text = _reviewed_jsonl(data_file, lines, plan)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, text)
    return plan


class _LineWriter:
    """CSV rows written so each ends on the line it ended on in the original file."""

    def __init__(self, delimiter: str) -> None:
        self.buffer, self.delimiter, self.line = io.StringIO(), delimiter, 0

    def write(self, cells: list[Any], end_line: int) -> int:
        """Write one row; returns the line it ends on (later than `end_line` only if earlier rows grew)."""
        one = io.StringIO()
        csv.writer(one, delimiter=self.delimiter, lineterminator="\n").writerow(cells)
        text = one.getvalue()
        spans = text.count("\n")
        while self.line + spans < end_line:
            self.buffer.write("\n")
            self.line += 1
        self.buffer.write(text)
        self.line += spans
        return self.line


def _reviewed_csv(data_file: Path, plan: ReviewPlan, delimiter: str | None) -> str:
    """Untouched rows keep their cells exactly (extra cells included, so the reader still sees them)."""
    from openrecipe.data.jsonio import read_text_strict

    text = read_text_strict(data_file)
    separator = csv_delimiter(text, data_file, delimiter)
    reader = csv.reader(io.StringIO(text), delimiter=separator)
    raw_header = next(reader, [])
    header = [column.strip() for column in raw_header]
    out = _LineWriter(separator)
    out.write(raw_header, reader.line_num)
    row = -1
    for cells in reader:
        if all(not cell.strip() for cell in cells):
            continue
        row += 1
        if row in plan.dropped:
            continue
        cells = list(cells)
        for column, value in plan.edits.get(row, {}).items():
            position = header.index(column)
            cells += [""] * (position + 1 - len(cells))
            cells[position] = value
        plan.written[row] = out.write(cells, reader.line_num)
    return out.buffer.getvalue()


def _reviewed_sheet(
    data_file: Path, columns: list[str], rows: list[dict[str, str]], lines: list[int], plan: ReviewPlan
) -> str:
    out = _LineWriter(",")
    out.write(columns, 1)
    for row, values in enumerate(rows):
        if row not in plan.dropped:
            merged = {**values, **plan.edits.get(row, {})}
            plan.written[row] = out.write([merged.get(name, "") for name in columns], lines[row])
    return out.buffer.getvalue()


def _reviewed_jsonl(data_file: Path, lines: list[int], plan: ReviewPlan) -> str:
    """Untouched rows keep their original text on line-based files; edited ones keep their other fields."""
    values = dict(json_values_of(data_file))
    originals: dict[int, str] = {}
    if not (data_file.suffix.lower() == ".parquet" or data_file.read_bytes().lstrip().startswith(b"[")):
        with open(data_file, encoding="utf-8-sig", errors="replace") as handle:
            originals = {number: line.rstrip("\n") for number, line in enumerate(handle, start=1)}
    by_line = {line: row for row, line in enumerate(lines)}
    out: list[str] = []
    for number in range(1, max([*by_line, *originals, 0]) + 1):
        row = by_line.get(number)
        if row is None:
            out.append("")  # a blank line in the original
        elif row in plan.dropped:
            out.append("")
        elif row in plan.edits or number not in originals:
            out.append(_edited_json(values[number], plan.edits.get(row, {})))
        else:
            out.append(originals[number])
        if row is not None and row not in plan.dropped:
            plan.written[row] = number
    return "".join(line + "\n" for line in out)


def _edited_json(value: Any, edits: dict[str, str]) -> str:
    if isinstance(value, dict) and set(value) == {"_raw"} and "_raw" in edits:
        return edits["_raw"]  # an unparseable line, fixed by hand: the text is the new line
    row = dict(value) if isinstance(value, dict) else {"_raw": value}
    for column, text in edits.items():
        row[column] = json_value(text, row.get(column))
    return json.dumps(row, ensure_ascii=False, default=str)


# --- the clean stage's side -----------------------------------------------------------------------------


class CleanSource(DataSource):
    """A data source of the clean stage: it may carry the workbench's patch of hand edits."""

    review: InputPath | None = Field(
        None,
        description="Patch of hand edits made in the workbench (default: `<path>.review.json` beside the file, "
        "when there is one); the clean stage applies it after checking it was made for this file",
    )

    def extra_references(self) -> list[tuple[tuple[str | int, ...], PathRef]]:
        """The patch beside the file is an input too: it joins the stage's cache key, the manifest and a
        published bundle (whose recipe then names it in `review:`)."""
        return [] if self.review is not None else [(("review",), PathRef(self.path + PATCH_SUFFIX))]


def find_patches(
    configured: list[CleanSource], resolved: list[DataSource], resolve: Callable[[PathRef], Path | str]
) -> list[Path | None]:
    """Per source: the patch named in `review:` (which must exist), else the one beside a local file, else None."""
    found: list[Path | None] = []
    for index, (source, local) in enumerate(zip(configured, resolved, strict=True)):
        if isinstance(source, CleanSource) and source.review is not None:
            patch = resolve(source.review)
            if not isinstance(patch, Path) or not patch.is_file():
                raise OpenRecipeError(
                    f"review patch not found: {source.review}",
                    where=f"sources.{index}.review",
                    fix="point it at a `.review.json` file written by the workbench, or remove the key",
                )
            found.append(patch)
            continue
        beside = patch_path(Path(local.path))
        found.append(beside if Path(local.path).is_file() and beside.is_file() else None)
    return found


@dataclass
class AppliedReview:
    label: str
    original: Path
    patch: Path
    copy: Path
    patch_sha256: str
    counts: Counter

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.original.name,
            "patch": self.patch.name,
            "patch_sha256": self.patch_sha256,
            **{key: self.counts.get(key, 0) for key in COUNTS},
        }


COUNTS = (
    "edited_rows",
    "edited_cells",
    "flagged_removed",
    "duplicates_removed",
    "duplicates_rejected",
    "pii_accepted",
    "pii_rejected",
    "pii_stale",
)


@dataclass
class AppliedReviews:
    """The sources the clean stage reads (reviewed copies where a patch applies) and what each patch did."""

    sources: list[DataSource]
    clean: CleanConfig
    applied: list[AppliedReview]
    keep_duplicates: frozenset[str] = frozenset()  # `where` of the rows whose duplicate proposal was rejected

    def to_json(self) -> dict[str, Any]:
        return {review.label: review.to_json() for review in self.applied}

    @contextlib.contextmanager
    def original_names(self) -> Iterator[None]:
        """Errors about a reviewed copy name the original file (its lines are the original's)."""
        try:
            yield
        except OpenRecipeError as error:
            if error.where:
                error.where = self._originals(error.where)
                error.args = (error.format(),)
            raise

    def note_in_report(self, out_dir: Path) -> None:
        """Add the hand edits to the cleaning report (`report.json`'s `review`, a table in `report.md`)."""
        if not self.applied:
            return
        report = json.loads(self._originals((out_dir / "report.json").read_text(encoding="utf-8")))
        report["review"] = self.to_json()
        atomic_write_json(out_dir / "report.json", report)
        lines = ["", "## Hand edits (review patches)", "", "| source | patch | " + " | ".join(COUNTS) + " |"]
        lines.append("|---|---|" + "---|" * len(COUNTS))
        for review in self.applied:
            cells = " | ".join(str(review.counts.get(key, 0)) for key in COUNTS)
            lines.append(f"| {review.label} | {review.patch.name} (sha256 {review.patch_sha256[:12]}) | {cells} |")
        markdown = self._originals((out_dir / "report.md").read_text(encoding="utf-8"))
        atomic_write_text(out_dir / "report.md", markdown.rstrip("\n") + "\n" + "\n".join(lines) + "\n")

    def _originals(self, text: str) -> str:
        for review in self.applied:
            text = text.replace(str(review.copy), str(review.original))
        return text


def apply_reviews(
    sources: list[DataSource], patches: list[Path | None], clean: CleanConfig, out_dir: Path
) -> AppliedReviews:
    """Check each patch against its file's SHA-256 and write the reviewed copy the stage reads instead."""
    result = AppliedReviews(sources=[], clean=clean, applied=[])
    keep: set[str] = set()
    duplicates: set[str] = set()
    for index, (source, patch_file) in enumerate(zip(sources, patches, strict=True)):
        if patch_file is None:
            result.sources.append(source)
            continue
        original = Path(source.path)
        _check_reviewable(original, source, patch_file)
        patch = read_patch(patch_file)
        actual = sha256_file(original)
        if actual != patch.sha256:
            raise OpenRecipeError(
                f"the review patch was made for another version of {original.name} "
                f"(SHA-256 {patch.sha256[:12]}…, the file now has {actual[:12]}…)",
                where=str(patch_file),
                fix=f"open {original.name} in the workbench (`openrecipe ui`), which sets the old patch aside as "
                f"{stale_patch_path(original, patch.sha256).name}, and redo the edits; or delete the patch to "
                "clean the file without them",
            )
        copy = out_dir.absolute() / str(index) / reviewed_name(original)
        plan = write_reviewed(original, patch, copy, delimiter=source.delimiter)
        keep |= plan.keep_pii
        duplicates |= {f"{copy}:{plan.written[row]}" for row in plan.kept_duplicates if row in plan.written}
        result.applied.append(
            AppliedReview(source.label, original, patch_file, copy, sha256_file(patch_file), plan.counts)
        )
        result.sources.append(source.model_copy(update={"path": str(copy), "name": source.label, "sheet": None}))
    if keep - set(clean.pii_keep_organization_contacts):
        contacts = [*clean.pii_keep_organization_contacts, *sorted(keep - set(clean.pii_keep_organization_contacts))]
        result.clean = clean.model_copy(update={"pii_keep_organization_contacts": contacts})
    result.keep_duplicates = frozenset(duplicates)
    return result


def _check_reviewable(original: Path, source: DataSource, patch_file: Path) -> None:
    if not original.is_file() or original.suffix.lower() not in REVIEWABLE:
        raise OpenRecipeError(
            f"a review patch applies to one CSV, XLSX, JSONL, JSON or Parquet file, not {original}",
            where=str(patch_file),
            fix="remove `review:` from this source, or point the source at the reviewed file",
        )
    if source.sheet is not None and original.suffix.lower() in (".xlsx", ".xlsm"):
        from openpyxl import load_workbook

        first = load_workbook(original, read_only=True).sheetnames[0]
        if source.sheet != first:
            raise OpenRecipeError(
                f"the workbench reviews the first sheet ({first!r}) but the source reads sheet {source.sheet!r}",
                where=str(patch_file),
                fix="move the sheet first in the workbook, or delete the patch",
            )


def prepare_reviewed_data(
    sources: list[DataSource], patches: list[Path | None], out_dir: Path, *, clean: CleanConfig, **options: Any
) -> dict[str, Any]:
    """`prepare_data` over the sources with their patches applied; the report (and the summary's `review`)
    counts the hand edits."""
    from openrecipe.data.prepare import prepare_data

    reviews = apply_reviews(sources, patches, clean, out_dir / "reviewed")
    with reviews.original_names():
        summary = prepare_data(
            reviews.sources, out_dir, clean=reviews.clean, keep_duplicates=reviews.keep_duplicates, **options
        )
    reviews.note_in_report(out_dir)
    if reviews.applied:
        summary["review"] = reviews.to_json()
    return summary
