"""Intervals and paired tests for per-item scores: Wilson intervals for pass/fail cells (a bootstrap for
graded scores), and exact McNemar (a paired bootstrap for graded scores) for two variants on the same items."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def is_pass_fail(scores: list[float]) -> bool:
    return all(score in (0.0, 1.0) for score in scores)


def wilson_interval(successes: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible at 0/n and n/n, unlike a percentile bootstrap."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    interval = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def bootstrap_interval(
    scores: list[float], *, resamples: int = 2000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """(mean, low, high) of the mean score; deterministic for a seed."""
    if not scores:
        return float("nan"), float("nan"), float("nan")
    values = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2
    return float(values.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def score_interval(scores: list[float], *, seed: int = 0) -> dict[str, float | int | str]:
    """A leaderboard cell: mean, 95% interval (Wilson for pass/fail, bootstrap otherwise) and n."""
    if scores and is_pass_fail(scores):
        successes = int(sum(scores))
        low, high = wilson_interval(successes, len(scores))
        return {
            "score": successes / len(scores),
            "low": low,
            "high": high,
            "n": len(scores),
            "passed": successes,
            "interval": "wilson",
        }
    mean, low, high = bootstrap_interval(scores, seed=seed)
    return {"score": mean, "low": low, "high": high, "n": len(scores), "interval": "bootstrap"}


@dataclass(frozen=True)
class PairedTest:
    """`a` against `b` on the same items: difference of means and a two-sided p-value."""

    n: int
    mean_a: float
    mean_b: float
    only_a: int  # items a passes and b fails (pass/fail scores)
    only_b: int
    p_value: float
    test: str

    @property
    def delta(self) -> float:
        return self.mean_a - self.mean_b


def exact_mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: a binomial test on the discordant pairs."""
    if only_a + only_b == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def paired_bootstrap_p(differences: np.ndarray, *, resamples: int = 4000, seed: int = 0) -> float:
    """Two-sided p-value of a zero mean difference, from resampling items with replacement."""
    if not differences.any():
        return 1.0
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(resamples, len(differences)))].mean(axis=1)
    tail = min(float((means <= 0).mean()), float((means >= 0).mean()))
    return min(1.0, 2 * tail)


def paired_test(scores_a: list[float], scores_b: list[float], *, seed: int = 0) -> PairedTest:
    """Exact McNemar for pass/fail items, a paired bootstrap of the mean difference otherwise."""
    assert len(scores_a) == len(scores_b), "paired tests need the same items"
    a, b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    n = len(a)
    mean_a, mean_b = (float(a.mean()), float(b.mean())) if n else (float("nan"), float("nan"))
    only_a, only_b = int((a > b).sum()), int((b > a).sum())
    if is_pass_fail(scores_a) and is_pass_fail(scores_b):
        return PairedTest(n, mean_a, mean_b, only_a, only_b, exact_mcnemar(only_a, only_b), "exact McNemar")
    return PairedTest(n, mean_a, mean_b, only_a, only_b, paired_bootstrap_p(a - b, seed=seed), "paired bootstrap")


def holm_adjust(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (one family of comparisons), in the input order."""
    order = sorted(range(len(p_values)), key=p_values.__getitem__)
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
