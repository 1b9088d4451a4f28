"""Bootstrap confidence intervals for mean scores."""

from __future__ import annotations

import numpy as np


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
