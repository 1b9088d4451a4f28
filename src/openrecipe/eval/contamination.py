"""Are the test prompts held out? Word n-gram overlap of every test prompt with the training data: the
share of the prompt's n-grams that occur anywhere in it (a prompt shorter than n counts as one n-gram).
A copy scores 1.0; a paraphrase that shares only a product name stays low."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from pydantic import Field

from openrecipe.config.base import StrictModel
from openrecipe.eval.items import TestItem


class ContaminationSettings(StrictModel):
    ngram: int = Field(5, ge=1, le=20, description="Words per n-gram")
    threshold: float = Field(0.5, gt=0, le=1, description="Warn about test prompts with at least this overlap")


def words(text: str) -> list[str]:
    """Lower-cased words; CJK characters count as words (those scripts have no spaces)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.findall(r"[\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7af]|\w+", text)


def ngrams(tokens: list[str], n: int) -> set[tuple[str, ...]]:
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


class TrainingIndex:
    """Every n-gram of the training texts, plus every shorter whole text (so short prompts can match)."""

    def __init__(self, texts: Iterable[str], n: int) -> None:
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        for text in texts:
            tokens = words(text)
            self.grams |= ngrams(tokens, n)
            # A prompt shorter than n words is one gram: it matches wherever those words appear in a row.
            for size in range(1, min(n, len(tokens) + 1)):
                self.grams |= {tuple(tokens[i : i + size]) for i in range(len(tokens) - size + 1)}

    def overlap(self, text: str) -> float:
        grams = ngrams(words(text), self.n)
        return sum(gram in self.grams for gram in grams) / len(grams) if grams else 0.0


def prompt_text(item: TestItem) -> str:
    if item.messages:
        return next((m["content"] for m in reversed(item.messages) if m["role"] == "user"), "")
    return item.text or ""


def check_contamination(
    items: list[TestItem], training_texts: list[str], settings: ContaminationSettings | None = None
) -> dict[str, Any]:
    """Per-domain counts of test prompts at or above the threshold, and the flagged prompts themselves."""
    settings = settings or ContaminationSettings()
    index = TrainingIndex(training_texts, settings.ngram)
    by_domain: dict[str, list[float]] = defaultdict(list)
    flagged = []
    for item in items:
        if item.metric == "perplexity":
            continue
        prompt = prompt_text(item)
        value = index.overlap(prompt)
        by_domain[item.domain].append(value)
        if value >= settings.threshold:
            flagged.append({"id": item.id, "domain": item.domain, "prompt": prompt, "overlap": round(value, 3)})
    return {
        "ngram": settings.ngram,
        "threshold": settings.threshold,
        "training_texts": len(training_texts),
        "items": sum(len(v) for v in by_domain.values()),
        "flagged": len(flagged),
        "by_domain": {
            domain: {
                "n": len(values),
                "flagged": sum(v >= settings.threshold for v in values),
                "mean_overlap": round(sum(values) / len(values), 3),
                "max_overlap": round(max(values), 3),
            }
            for domain, values in by_domain.items()
        },
        "flagged_items": flagged,
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per domain, e.g. "support: 0 of 72 test prompts overlap the training data (max 0.33)"."""
    return [
        f"{domain}: {row['flagged']} of {row['n']} test prompts share ≥{report['threshold']:.0%} of their "
        f"{report['ngram']}-grams with the training data (mean {row['mean_overlap']:.2f}, max {row['max_overlap']:.2f})"
        for domain, row in report["by_domain"].items()
    ]
