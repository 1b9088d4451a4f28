"""Cleaning with a report: exact and near-duplicate removal, length filters, PII scrubbing.

Near-duplicates use datasketch's MinHash LSH; only the normalization and PII patterns are ours.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import xxhash
from pydantic import Field

from openrecipe.config.base import StrictModel
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


def scrub_pii(text: str, keep: set[str]) -> tuple[str, Counter]:
    counts: Counter = Counter()
    for rule, pattern, placeholder in PII_PATTERNS:

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


def _hash32(data: bytes) -> int:
    # xxhash (already a dependency of `datasets`) is ~10x faster than datasketch's default SHA-1.
    return xxhash.xxh32_intdigest(data)


def _shingles(text: str, size: int) -> set[bytes]:
    if len(text) <= size:
        return {text.encode()}
    return {text[i : i + size].encode() for i in range(len(text) - size + 1)}


def _map_text(record: Record, function) -> Record:
    if record.messages is not None:
        messages = [{**message, "content": function(message["content"])} for message in record.messages]
        return Record(messages=messages, where=record.where, extra=record.extra)
    return Record(text=function(record.text or ""), where=record.where, extra=record.extra)


def clean_records(records: list[Record], config: CleanConfig) -> tuple[list[Record], CleanReport]:
    """Apply every rule in a fixed order; each removal is counted and exemplified."""
    from datasketch import MinHash, MinHashLSH

    report = CleanReport(rows_in=len(records))
    limit = config.examples_per_rule
    keep = set(config.pii_keep_organization_contacts)
    kept: list[Record] = []
    seen_exact: dict[str, str] = {}
    lsh = MinHashLSH(threshold=config.near_dedup_threshold, num_perm=config.num_perm) if config.near_dedup else None
    # The random permutations depend only on (num_perm, seed): build them once, not per record.
    template = MinHash(num_perm=config.num_perm, seed=1, hashfunc=_hash32)
    permutations, scheme = template.permutations, template.scheme
    for number, record in enumerate(records):
        text = record.content_text()
        length = len(text.strip())
        if length < config.min_chars:
            report.removed["too_short"] += 1
            report.note("too_short", record, limit, f"{length} < min_chars={config.min_chars}")
            continue
        if config.max_chars is not None and length > config.max_chars:
            report.removed["too_long"] += 1
            report.note("too_long", record, limit, f"{length} > max_chars={config.max_chars}")
            continue
        key = normalize(text)
        if config.dedup:
            digest = hashlib.sha256(key.encode()).hexdigest()
            if digest in seen_exact:
                report.removed["exact_duplicate"] += 1
                report.note("exact_duplicate", record, limit, f"same as {seen_exact[digest]}")
                continue
            seen_exact[digest] = record.where
        if lsh is not None:
            signature = MinHash(
                num_perm=config.num_perm, seed=1, hashfunc=_hash32, permutations=permutations, scheme=scheme
            )
            signature.update_batch(list(_shingles(key, config.shingle_size)))
            similar = lsh.query(signature)
            if similar:
                report.removed["near_duplicate"] += 1
                report.note("near_duplicate", record, limit, f"similar to {records[int(similar[0])].where}")
                continue
            lsh.insert(str(number), signature)
        if config.pii:
            totals: Counter = Counter()

            def scrub(content: str, totals: Counter = totals) -> str:
                scrubbed, counts = scrub_pii(content, keep)
                totals.update(counts)
                return scrubbed

            cleaned = _map_text(record, scrub)
            for rule, count in totals.items():
                report.modified[f"pii_{rule}"] += count
                report.note(f"pii_{rule}", cleaned, limit)  # the scrubbed text: a report must not leak PII
            record = cleaned
        kept.append(record)
    report.rows_out = len(kept)
    return kept, report
