"""Deterministic weighted mixing of sources, resumable mid-stream from a small state dict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

import numpy as np

from openrecipe.errors import OpenRecipeError

T = TypeVar("T")


class Mixer(Generic[T]):
    """Draws items so each source's share of the stream follows its weight.

    Each source is walked through its own seeded permutation (a new one each time it is exhausted);
    which source supplies the next item is drawn from one RNG. `state_dict()` holds the RNG state
    and per-source positions as plain ints, so resuming never replays data.
    """

    def __init__(
        self,
        sources: dict[str, Sequence[T]],
        weights: dict[str, float],
        *,
        seed: int = 0,
        max_upsample: float = 4.0,
    ) -> None:
        if set(sources) != set(weights):
            raise OpenRecipeError(f"mixing weights {sorted(weights)} do not match sources {sorted(sources)}")
        empty = [name for name, items in sources.items() if len(items) == 0]
        if empty:
            raise OpenRecipeError(f"cannot mix empty source(s): {', '.join(empty)}")
        if any(weight <= 0 for weight in weights.values()):
            raise OpenRecipeError("mixing weights must be positive")
        self.names = sorted(sources)
        self.sources = sources
        total = sum(weights.values())
        self.probabilities = np.array([weights[name] / total for name in self.names])
        self.seed = seed
        self.max_upsample = max_upsample
        self._rng = np.random.default_rng(seed)
        self.positions = dict.fromkeys(self.names, 0)
        self.epochs = dict.fromkeys(self.names, 0)
        self.drawn = dict.fromkeys(self.names, 0)
        self._orders: dict[str, np.ndarray] = {}

    def _order(self, name: str) -> np.ndarray:
        key = f"{name}:{self.epochs[name]}"
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if not k.startswith(f"{name}:")}
            index = self.names.index(name)
            rng = np.random.default_rng([self.seed, index, self.epochs[name]])
            self._orders[key] = rng.permutation(len(self.sources[name]))
        return self._orders[key]

    def next(self) -> tuple[str, T]:
        name = self.names[int(self._rng.choice(len(self.names), p=self.probabilities))]
        if self.positions[name] >= len(self.sources[name]):
            self.positions[name] = 0
            self.epochs[name] += 1
        item = self.sources[name][int(self._order(name)[self.positions[name]])]
        self.positions[name] += 1
        self.drawn[name] += 1
        return name, item

    def take(self, count: int) -> list[tuple[str, T]]:
        return [self.next() for _ in range(count)]

    def plan(self, total: int) -> dict[str, Any]:
        """What a mixture of `total` items means per source: expected count and upsampling factor."""
        out = {}
        for name, probability in zip(self.names, self.probabilities, strict=True):
            expected = probability * total
            factor = expected / len(self.sources[name])
            out[name] = {
                "size": len(self.sources[name]),
                "share": round(float(probability), 4),
                "expected_items": round(float(expected), 1),
                "upsample": round(float(factor), 3),
            }
        return out

    def check_upsampling(self, total: int) -> list[str]:
        """Sources that would repeat more than max_upsample times: named so the report can say so."""
        return [name for name, row in self.plan(total).items() if row["upsample"] > self.max_upsample]

    def state_dict(self) -> dict[str, Any]:
        state = self._rng.bit_generator.state
        return {
            "seed": self.seed,
            "rng": {
                "state": int(state["state"]["state"]),
                "inc": int(state["state"]["inc"]),
                "has_uint32": int(state["has_uint32"]),
                "uinteger": int(state["uinteger"]),
            },
            "positions": dict(self.positions),
            "epochs": dict(self.epochs),
            "drawn": dict(self.drawn),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["seed"] != self.seed or set(state["positions"]) != set(self.names):
            raise OpenRecipeError("mixer state does not match this mixture (different seed or sources)")
        self._rng.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {"state": state["rng"]["state"], "inc": state["rng"]["inc"]},
            "has_uint32": state["rng"]["has_uint32"],
            "uinteger": state["rng"]["uinteger"],
        }
        self.positions = {name: int(value) for name, value in state["positions"].items()}
        self.epochs = {name: int(value) for name, value in state["epochs"].items()}
        self.drawn = {name: int(value) for name, value in state["drawn"].items()}


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
