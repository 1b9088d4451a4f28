"""Cleaning with a report: exact and near-duplicate removal, length filters, PII scrubbing, in two
streaming passes whose memory does not grow with the text (see `Cleaner`)."""

from __future__ import annotations

import json
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash
from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.data.minhash import BandIndex
from openrecipe.data.records import Record


class CleanConfig(StrictModel):
    dedup: bool = Field(True, description="Remove exact duplicates (after normalization)")
    near_dedup: bool = Field(True, description="Remove near-duplicates (MinHash LSH)")
    near_dedup_threshold: float = Field(0.85, gt=0.0, le=1.0, description="Jaccard similarity threshold")
    num_perm: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(5, ge=1, le=32, description="Character n-gram size for MinHash")
    min_chars: int = Field(1, ge=0, description="Drop records with fewer characters")
    max_chars: int | None = Field(20000, ge=1, description="Drop records with more characters")
    pii: bool = Field(True, description="Replace emails, phone numbers and card/ID numbers with placeholders")
    pii_keep_organization_contacts: list[str] = Field(
        default_factory=list,
        description="Emails/phones to keep as they are (e.g. your public support address)",
    )
    examples_per_rule: int = Field(3, ge=0, le=50)


_SPACE = re.compile(r"\s+")
_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """NFKC, lower case, no punctuation, single spaces: 'Hello,  World!' == 'hello world'."""
    text = unicodedata.normalize("NFKC", text).lower()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


PII_PATTERNS: list[tuple[str, re.Pattern[str], str]] = [
    ("email", re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}\b"), "<EMAIL>"),
    # Chinese resident ID (17 digits + check digit/X) before card numbers so it is not mistaken for one.
    ("id_number", re.compile(r"\b\d{17}[\dXx]\b|\b\d{3}-\d{2}-\d{4}\b"), "<ID_NUMBER>"),
    ("card_number", re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "<CARD_NUMBER>"),
    # Three digit groups ((555) 123-4567, +1 555 123 4567), or a compact international / Chinese mobile number.
    (
        "phone",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,5}\b"
            r"|(?<![\w+])\+\d{8,14}\b|\b1[3-9]\d{9}\b"
        ),
        "<PHONE>",
    ),
]


def _luhn_ok(digits: str) -> bool:
    total, parity = 0, len(digits) % 2
    for index, char in enumerate(digits):
        value = int(char)
        if index % 2 == parity:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


_DIGIT = re.compile(r"\d")


def scrub_pii(text: str, keep: set[str]) -> tuple[str, Counter]:
    counts: Counter = Counter()
    has_digit, has_at = _DIGIT.search(text) is not None, "@" in text
    for rule, pattern, placeholder in PII_PATTERNS:
        if not (has_at if rule == "email" else has_digit):  # every other pattern needs a digit
            continue

        def replace(match: re.Match[str], rule: str = rule, placeholder: str = placeholder) -> str:
            found = match.group(0)
            if found in keep:
                return found
            if rule == "card_number" and not _luhn_ok(re.sub(r"\D", "", found)):
                return found
            counts[rule] += 1
            return placeholder

        text = pattern.sub(replace, text)
    return text, counts


@dataclass
class CleanReport:
    rows_in: int = 0
    rows_out: int = 0
    removed: Counter = field(default_factory=Counter)
    modified: Counter = field(default_factory=Counter)
    examples: dict[str, list[dict[str, str]]] = field(default_factory=dict)

    def note(self, rule: str, record: Record, limit: int, detail: str = "") -> None:
        bucket = self.examples.setdefault(rule, [])
        if len(bucket) < limit:
            snippet = record.content_text().replace("\n", " ⏎ ")
            bucket.append({"where": record.where, "text": snippet[:160], **({"detail": detail} if detail else {})})

    def to_json(self) -> dict[str, Any]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "removed": dict(self.removed),
            "modified": dict(self.modified),
            "examples": self.examples,
        }


def _map_text(record: Record, function) -> Record:
    if record.messages is not None:
        messages = [{**message, "content": function(message["content"])} for message in record.messages]
        return Record(messages=messages, where=record.where, extra=record.extra, tools=record.tools)
    return Record(text=function(record.text or ""), where=record.where, extra=record.extra)


class Spill:
    """Where records wait between the two passes: in memory for small data, else a JSONL file on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._items: list[Record] = []
        self._handle = open(path, "w", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def append(self, record: Record) -> None:
        if self._handle is None:
            self._items.append(record)
            return
        row = {"where": record.where, "extra": record.extra, "tools": record.tools}
        row["messages" if record.messages is not None else "text"] = (
            record.messages if record.messages is not None else record.text
        )
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    def __iter__(self) -> Iterator[Record]:
        if self._handle is None:
            yield from self._items
            return
        self._handle.close()
        with open(self.path, encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                yield Record(
                    messages=row.get("messages"),
                    text=row.get("text"),
                    where=row["where"],
                    extra=row["extra"],
                    tools=row["tools"],
                )

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self.path.unlink(missing_ok=True)


class Cleaner:
    """Cleaning in two passes and bounded memory: `add` every record (length filters, then an 8-byte exact
    key and the near-duplicate band keys), then iterate `kept()` (duplicates resolved, PII scrubbed).

    A record is an exact duplicate of the first with the same normalized text, and a near duplicate of
    the first earlier record sharing an LSH band with it (exact duplicates take no part).
    """

    def __init__(self, config: CleanConfig, spill: Spill | None = None, keep: frozenset[str] = frozenset()) -> None:
        self.config = config
        self.report = CleanReport()
        self.spill = spill if spill is not None else Spill()
        self.keep = keep  # `where` of records a person decided to keep although they duplicate another
        self._kept: set[int] = set()
        self._exact = array("Q")
        signatures = self.spill.path.with_suffix(".sig") if self.spill.path is not None else None
        self._bands = BandIndex(config.near_dedup_threshold, config.num_perm, config.shingle_size, signatures)

    def add(self, record: Record) -> None:
        config, report = self.config, self.report
        report.rows_in += 1
        text = record.content_text()
        length = len(text.strip())
        if length < config.min_chars:
            report.removed["too_short"] += 1
            report.note("too_short", record, config.examples_per_rule, f"{length} < min_chars={config.min_chars}")
            return
        if config.max_chars is not None and length > config.max_chars:
            report.removed["too_long"] += 1
            report.note("too_long", record, config.examples_per_rule, f"{length} > max_chars={config.max_chars}")
            return
        key = normalize(text)
        if record.where in self.keep:
            self._kept.add(len(self._exact))
        self._exact.append(xxhash.xxh3_64_intdigest(key.encode()) if config.dedup else len(self._exact))
        if config.near_dedup:
            self._bands.add(key)
        self.spill.append(record)

    def _duplicates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per spilled record: the ordinal of the record it exactly duplicates, and of the one it nearly
        duplicates (its own ordinal where it is neither)."""
        count = len(self._exact)
        exact = np.frombuffer(self._exact, dtype=np.uint64) if count else np.zeros(0, dtype=np.uint64)
        _, first_index, inverse = np.unique(exact, return_index=True, return_inverse=True)
        exact_of = first_index[inverse.reshape(-1)] if count else np.zeros(0, dtype=np.int64)
        if not self.config.near_dedup:
            return exact_of, np.arange(count)
        return exact_of, self._bands.first_matches(include=exact_of == np.arange(count))

    def kept(self) -> Iterator[Record]:
        config, report, limit = self.config, self.report, self.config.examples_per_rule
        exact_of, near_of = self._duplicates()
        ordinals = np.arange(len(exact_of))
        wanted = set(exact_of[exact_of != ordinals][:limit].tolist()) | set(
            near_of[near_of != ordinals][:limit].tolist()
        )
        wheres: dict[int, str] = {}
        keep = set(config.pii_keep_organization_contacts)
        for ordinal, record in enumerate(self.spill):
            if ordinal in wanted:
                wheres[ordinal] = record.where
            if exact_of[ordinal] != ordinal and ordinal not in self._kept:
                report.removed["exact_duplicate"] += 1
                target = int(exact_of[ordinal])
                report.note("exact_duplicate", record, limit, f"same as {wheres.get(target, f'row {target}')}")
                continue
            if near_of[ordinal] != ordinal and ordinal not in self._kept:
                report.removed["near_duplicate"] += 1
                target = int(near_of[ordinal])
                report.note("near_duplicate", record, limit, f"similar to {wheres.get(target, f'row {target}')}")
                continue
            if config.pii:
                record = self._scrub(record, keep)
            report.rows_out += 1
            yield record
        self.close()

    def close(self) -> None:
        self.spill.close()
        self._bands.close()

    def _scrub(self, record: Record, keep: set[str]) -> Record:
        totals: Counter = Counter()

        def scrub(content: str) -> str:
            scrubbed, counts = scrub_pii(content, keep)
            totals.update(counts)
            return scrubbed

        cleaned = _map_text(record, scrub)
        for rule, count in totals.items():
            self.report.modified[f"pii_{rule}"] += count
            self.report.note(f"pii_{rule}", cleaned, self.config.examples_per_rule)  # scrubbed: no PII in reports
        return cleaned


def clean_records(records: Iterable[Record], config: CleanConfig) -> tuple[list[Record], CleanReport]:
    """Apply every rule in a fixed order (length, exact, near, PII); each removal is counted and exemplified."""
    cleaner = Cleaner(config)
    for record in records:
        cleaner.add(record)
    kept = list(cleaner.kept())
    return kept, cleaner.report
