"""Compiled runs train on a few fixed padded shapes: every example is kept, the shapes are bounded, and the
padding carries no loss."""

import pytest
import torch

from openrecipe.data.tokenize import IGNORE_INDEX
from openrecipe.train.batching import collate, trainable_tokens
from openrecipe.train.config import TrainSettings
from openrecipe.train.steps import bucket_length, static_micro_batches


def rows(*lengths):
    return [{"input_ids": [5] * n, "labels": [7] * n} for n in lengths]


@pytest.mark.parametrize(("length", "bucket"), [(1, 32), (32, 32), (33, 48), (49, 64), (65, 96), (200, 256)])
def test_lengths_round_up_to_buckets(length, bucket):
    assert bucket_length(length) == bucket


def test_every_example_lands_in_a_fixed_shape_per_bucket():
    examples = rows(10, 20, 30, 40, 45, 60, 90, 100, 130, 250, 300)
    planned = static_micro_batches(examples, 8, max_tokens=256)
    kept = sorted(len(r["input_ids"]) for chunk, _ in planned for r in chunk)
    assert kept == sorted(len(r["input_ids"]) for r in examples)
    shapes = {shape for _, shape in planned}
    for chunk, (num_rows, length) in planned:
        assert len(chunk) <= num_rows and max(len(r["input_ids"]) for r in chunk) <= length
        assert num_rows * length <= 256 or num_rows == 1
    # One shape per length bucket, whatever lengths came in.
    assert len(shapes) == len({length for _, length in shapes})
    many = static_micro_batches(rows(*range(1, 200)), 8, max_tokens=256)
    assert len({shape for _, shape in many}) == 7  # buckets 32, 48, 64, 96, 128, 192, 256


def test_padded_rows_carry_no_loss_and_are_attended():
    examples = rows(3, 5)
    batch = collate(examples, pad_token_id=0, shape=(4, 32))
    assert batch["input_ids"].shape == batch["labels"].shape == (4, 32)
    assert int((batch["labels"] != IGNORE_INDEX).sum()) == 8
    assert trainable_tokens(examples) == 6
    assert bool(batch["attention_mask"][2:].all())  # empty rows: no fully masked attention row
    plain = collate(examples, pad_token_id=0)
    assert torch.equal(batch["input_ids"][:2, :5], plain["input_ids"])


@pytest.mark.parametrize(
    ("value", "device", "compiles"), [("auto", "cuda", True), ("auto", "cpu", False), (True, "cpu", True)]
)
def test_auto_compile_follows_the_device_measurement(value, device, compiles):
    settings = TrainSettings(compile=value)
    assert settings.compiles(device) is compiles
    assert "compile" not in settings.trajectory()
