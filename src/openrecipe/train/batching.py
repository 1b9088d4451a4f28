"""Deterministic epoch order over a weighted mixture, and collation into padded micro-batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from openrecipe.data.mixing import mixture_counts
from openrecipe.data.tokenize import IGNORE_INDEX
from openrecipe.utils.hashing import sha256_json

Example = dict[str, list[int]]


@dataclass
class TrainData:
    """Tokenized examples per source, their mixing weights, and a held-out eval split. A source is a list,
    or a disk-backed sequence (`data.blocks`) read by index, so a corpus larger than memory trains too."""

    sources: dict[str, Sequence[Example]]
    weights: dict[str, float]
    eval: Sequence[Example] = field(default_factory=list)
    max_upsample: float = 4.0

    def fingerprint(self) -> str:
        """Content hash of the examples, weights and eval split (disk-backed sequences by their own key)."""

        def content(items: Sequence[Example]) -> Any:
            return items if isinstance(items, list) else {"content_key": items.content_key()}  # type: ignore[attr-defined]

        sources = {name: content(items) for name, items in self.sources.items()}
        return sha256_json({"sources": sources, "weights": self.weights, "eval": content(self.eval)})

    def counts(self) -> dict[str, int]:
        sizes = {name: len(items) for name, items in self.sources.items()}
        return mixture_counts(sizes, self.weights, max_upsample=self.max_upsample)

    def epoch_size(self) -> int:
        return sum(self.counts().values())

    def describe(self) -> dict[str, Any]:
        counts = self.counts()
        out = {}
        for name, items in self.sources.items():
            tokens, trainable = _token_counts(items)
            factor = counts[name] / len(items)
            out[name] = {
                "examples": len(items),
                "per_epoch": counts[name],
                "upsample": round(factor, 3),
                "weight": self.weights[name],
                "tokens": tokens,
                "effective_trainable_tokens_per_epoch": round(trainable * factor),
            }
        return out


def _token_counts(items: Sequence[Example]) -> tuple[int, int]:
    """(tokens, trainable tokens); disk-backed sequences know theirs without reading every example."""
    counts = getattr(items, "token_counts", None)
    if counts is not None:
        return counts()
    tokens = sum(len(example["input_ids"]) for example in items)
    trainable = sum(sum(1 for label in example["labels"] if label != IGNORE_INDEX) for example in items)
    return tokens, trainable


class EpochOrder(Sequence[Example]):
    """One epoch's examples in order, held as (source, index) pairs: an example is read when its batch is."""

    def __init__(self, sources: list[Sequence[Example]], source_of: np.ndarray, index_of: np.ndarray) -> None:
        self.sources, self.source_of, self.index_of = sources, source_of, index_of

    def __len__(self) -> int:
        return len(self.index_of)

    def __getitem__(self, position):  # type: ignore[override]
        if isinstance(position, slice):
            pairs = zip(self.source_of[position].tolist(), self.index_of[position].tolist(), strict=True)
            return [self.sources[source][index] for source, index in pairs]
        return self.sources[int(self.source_of[position])][int(self.index_of[position])]


def epoch_order(data: TrainData, epoch: int, seed: int) -> EpochOrder:
    """The examples of one epoch, in order: a pure function of (data, epoch, seed)."""
    sources, source_of, index_of = [], [], []
    for index, (name, count) in enumerate(sorted(data.counts().items())):
        items = data.sources[name]
        rng = np.random.default_rng([seed, index, epoch])
        permutations = [np.zeros(0, dtype=np.int64)]
        while sum(len(p) for p in permutations) < count:  # upsampled sources walk full permutations first
            permutations.append(rng.permutation(len(items)))
        index_of.append(np.concatenate(permutations)[:count])
        source_of.append(np.full(count, len(sources), dtype=np.int64))
        sources.append(items)
    shuffle = np.random.default_rng([seed, 1_000_003, epoch]).permutation(sum(len(i) for i in index_of))
    if not index_of:
        return EpochOrder(sources, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
    return EpochOrder(sources, np.concatenate(source_of)[shuffle], np.concatenate(index_of)[shuffle])


def held_out(count: int, fraction: float, seed: int, salt: int, limit: int | None = None):
    """(training, held-out) example indices, both ascending: a seeded `fraction` of them (at most `limit`)
    is held out; fewer than 10 examples are all trained on."""
    if fraction <= 0 or count < 10:
        return np.arange(count), np.zeros(0, dtype=np.int64)
    order = np.random.default_rng([seed, 7919, salt]).permutation(count)
    cut = max(1, round(fraction * count))
    held = np.zeros(count, dtype=bool)
    held[order[: cut if limit is None else min(cut, limit)]] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def steps_per_epoch(data: TrainData, batch_size: int) -> int:
    return max(1, math.ceil(data.epoch_size() / batch_size))


def collate(
    examples: Sequence[Example], pad_token_id: int, shape: tuple[int, int] | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded batch. Packed examples carry position_ids and get no attention mask, so transformers
    builds a block-diagonal mask from the position_ids. A `shape` (rows, length) pads to exactly that: rows
    past the examples are all padding, attended (never a fully masked row) and carrying no loss."""
    rows, length = shape or (len(examples), max(len(example["input_ids"]) for example in examples))
    assert rows >= len(examples) and length >= max(len(example["input_ids"]) for example in examples)
    packed = all("position_ids" in example for example in examples)
    input_ids = torch.full((rows, length), pad_token_id, dtype=torch.long)
    labels = torch.full((rows, length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((rows, length), dtype=torch.long)
    attention[len(examples) :] = 1
    positions = torch.arange(length).repeat(rows, 1)
    for row, example in enumerate(examples):
        size = len(example["input_ids"])
        input_ids[row, :size] = torch.tensor(example["input_ids"])
        labels[row, :size] = torch.tensor(example["labels"])
        attention[row, :size] = 1
        positions[row, :size] = torch.tensor(example.get("position_ids", list(range(size))))
        if size < length:  # padding continues the positions so it never looks like a new document
            start = int(positions[row, size - 1]) + 1
            positions[row, size:] = torch.arange(start, start + length - size)
    if packed:
        return {"input_ids": input_ids, "labels": labels, "position_ids": positions}
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def trainable_tokens(examples: Sequence[Example]) -> int:
    """Tokens that carry loss after the causal shift (label i is predicted from position i-1)."""
    return sum(sum(1 for label in example["labels"][1:] if label != IGNORE_INDEX) for example in examples)
