"""How many items each source contributes to one pass over a weighted mixture."""

from __future__ import annotations


def mixture_counts(
    sizes: dict[str, int], weights: dict[str, float], *, total: int | None = None, max_upsample: float = 4.0
) -> dict[str, int]:
    """Exact item counts per source for one pass over a mixture (used by training epochs).

    total defaults to the natural size (sum of sizes); each source's count is its weight's share,
    capped at max_upsample × its size (the cap is reported by the caller, never silently exceeded).
    """
    total = total if total is not None else sum(sizes.values())
    norm = sum(weights.values())
    counts = {}
    for name in sorted(sizes):
        wanted = round(weights[name] / norm * total)
        counts[name] = max(1, min(wanted, int(max_upsample * sizes[name])))
    return counts
