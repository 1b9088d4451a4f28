"""What one optimizer step is made of: length-sorted micro-batches, the summed token loss, the held-out
loss; and the signal flag that lets a run stop at a step boundary."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import torch

from openrecipe.errors import OpenRecipeError
from openrecipe.train.batching import collate, trainable_tokens


class Signals:
    """SIGTERM/SIGINT set a flag; the loop saves at the next step boundary and exits."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        for number in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[number] = signal.signal(number, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, number: int, frame: Any) -> None:
        self.received = number

    def __exit__(self, *exc: Any) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def token_loss_sum(module, batch: dict[str, torch.Tensor], autocast) -> torch.Tensor:
    """Summed cross-entropy over trained tokens (`module` is a TrainedTokenLoss, maybe DDP-wrapped)."""
    with autocast:
        return module(**batch)


def micro_batches(examples: list, size: int, max_tokens: int | None = None) -> list[list]:
    """Group similar lengths into the same micro-batch: less padding, same summed loss. With `max_tokens`,
    a micro-batch is split further so rows × longest row stays under it (one longer row goes alone)."""
    ordered = sorted(examples, key=lambda example: len(example["input_ids"]))
    chunks = [ordered[start : start + size] for start in range(0, len(ordered), size)]
    if max_tokens is None:
        return chunks
    split: list[list] = []
    for chunk in chunks:
        current: list = []
        for example in chunk:  # ascending lengths: the newest row is the longest
            if current and (len(current) + 1) * len(example["input_ids"]) > max_tokens:
                split.append(current)
                current = []
            current.append(example)
        split.append(current)
    return split


def bucket_length(length: int) -> int:
    """The smallest of 32, 48, 64, 96, 128, 192, 256, … (powers of two and their 1.5x) that holds `length`:
    a few shapes cover every length, with at most a third of a row padding."""
    bucket = 32
    while True:
        for candidate in (bucket, bucket * 3 // 2):
            if candidate >= length:
                return candidate
        bucket *= 2


def bucket_rows(length: int, size: int, max_tokens: int | None) -> int:
    """Rows of a micro-batch whose rows are `length` long: `size`, fewer under a token cap (at least 1)."""
    return size if max_tokens is None else max(1, min(size, max_tokens // length))


def static_micro_batches(examples: list, size: int, max_tokens: int | None = None) -> list[tuple[list, tuple]]:
    """Micro-batches with their padded (rows, length) shape, drawn from one shape per length bucket, so a
    compiled model compiles once per bucket and stays compiled. Lengths are sorted as in `micro_batches`;
    a short micro-batch is filled with empty rows that carry no loss, so the summed loss is the same."""
    ordered = sorted(examples, key=lambda example: len(example["input_ids"]))
    planned: list[tuple[list, tuple]] = []
    current: list = []
    length = 0
    for example in ordered:  # ascending lengths: the newest row is the longest
        grown = bucket_length(len(example["input_ids"]))
        if current and len(current) + 1 > bucket_rows(grown, size, max_tokens):
            planned.append((current, (bucket_rows(length, size, max_tokens), length)))
            current = []
        current.append(example)
        length = grown
    if current:
        planned.append((current, (bucket_rows(length, size, max_tokens), length)))
    return planned


@torch.no_grad()
def evaluate_loss(model, examples, pad_token_id: int, micro: int, device: torch.device, autocast) -> float | None:
    if not examples:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for start in range(0, len(examples), micro):
        chunk = examples[start : start + micro]
        batch = {k: v.to(device) for k, v in collate(chunk, pad_token_id).items()}
        total += float(token_loss_sum(model, batch, autocast))
        count += trainable_tokens(chunk)
    model.train(was_training)
    return total / max(1, count)


def tensorboard_writer(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OpenRecipeError(
            "tensorboard: true needs the tensorboard package", fix="pip install tensorboard, or set tensorboard: false"
        ) from None
    return SummaryWriter(str(folder))


def append_row(path: Path, row: dict[str, Any], is_main: bool) -> None:
    if is_main:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
