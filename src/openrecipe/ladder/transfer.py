"""Does what the small model showed hold on the bigger one? For each swept setting, the best value at
every rung, and the Kendall tau of the settings' ordering between adjacent rungs, with and without the
pairs that seed noise cannot order."""

from __future__ import annotations

import itertools
import math
from typing import Any

from openrecipe.ladder.config import LadderSettings
from openrecipe.ladder.fit import distinguishable_tau, kendall_tau


def transfer_table(settings: LadderSettings, sweep: list[dict[str, Any]], seed_std: float | None) -> dict[str, Any]:
    band = 2 * seed_std * math.sqrt(2) if seed_std is not None else None
    combos = [(lr, batch) for lr in settings.learning_rates for batch in settings.batch_sizes]
    by_rung = []
    for size in settings.sizes:
        losses = {}
        for run in sweep:
            if run["width"] == size.width and run["depth"] == size.depth:
                losses[(run["learning_rate"], run["batch_size"])] = run["eval_loss"]
        best = min(losses, key=losses.get)
        by_rung.append(
            {
                "width": size.width,
                "depth": size.depth,
                "best_learning_rate": best[0],
                "best_batch_size": best[1],
                "losses": [_finite(losses[c]) for c in combos],
            }
        )
    adjacent = []
    for lower, upper in itertools.pairwise(by_rung):
        row = {
            "from": f"w{lower['width']}/d{lower['depth']}",
            "to": f"w{upper['width']}/d{upper['depth']}",
            "kendall_tau": kendall_tau(lower["losses"], upper["losses"]),
        }
        if band is not None:
            row["beyond_noise"] = distinguishable_tau(lower["losses"], upper["losses"], band)
        adjacent.append(row)
    return {
        "settings": [{"learning_rate": lr, "batch_size": batch} for lr, batch in combos],
        "rungs": by_rung,
        "adjacent": adjacent,
        "noise_band": band,
    }


def _finite(value: float) -> float:
    """A diverged run ranks last without breaking the rank statistics."""
    return value if math.isfinite(value) else 1e9
