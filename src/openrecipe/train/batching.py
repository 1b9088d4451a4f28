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

Example = dict[str, list[int]]


@dataclass
class TrainData:
    """Tokenized examples per source, their mixing weights, and a held-out eval split."""

    sources: dict[str, list[Example]]
    weights: dict[str, float]
    eval: list[Example] = field(default_factory=list)
    max_upsample: float = 4.0

    def counts(self) -> dict[str, int]:
        sizes = {name: len(items) for name, items in self.sources.items()}
        return mixture_counts(sizes, self.weights, max_upsample=self.max_upsample)

    def epoch_size(self) -> int:
        return sum(self.counts().values())

    def describe(self) -> dict[str, Any]:
        counts = self.counts()
        out = {}
        for name, items in self.sources.items():
            tokens = sum(len(example["input_ids"]) for example in items)
            trainable = sum(sum(1 for label in example["labels"] if label != IGNORE_INDEX) for example in items)
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


def epoch_order(data: TrainData, epoch: int, seed: int) -> list[Example]:
    """The examples of one epoch, in order: a pure function of (data, epoch, seed)."""
    order: list[Example] = []
    for index, (name, count) in enumerate(sorted(data.counts().items())):
        items = data.sources[name]
        rng = np.random.default_rng([seed, index, epoch])
        picks: list[int] = []
        while len(picks) < count:  # upsampled sources walk full permutations before repeating
            picks.extend(rng.permutation(len(items)).tolist())
        order.extend(items[i] for i in picks[:count])
    shuffle = np.random.default_rng([seed, 1_000_003, epoch]).permutation(len(order))
    return [order[i] for i in shuffle]


def steps_per_epoch(data: TrainData, batch_size: int) -> int:
    return max(1, math.ceil(data.epoch_size() / batch_size))


def collate(examples: Sequence[Example], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch. Packed examples carry position_ids and get no attention mask, so transformers
    builds a block-diagonal mask from the position_ids."""
    length = max(len(example["input_ids"]) for example in examples)
    packed = all("position_ids" in example for example in examples)
    input_ids = torch.full((len(examples), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    positions = torch.zeros((len(examples), length), dtype=torch.long)
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
