import pytest

from openrecipe.train.config import TrainSettings
from openrecipe.train.steps import micro_batches


def rows(*lengths):
    return [{"input_ids": [0] * n} for n in lengths]


def test_token_cap_splits_micro_batches_and_keeps_every_row():
    examples = rows(100, 10, 60, 30, 120, 50)
    chunks = micro_batches(examples, 6, max_tokens=200)
    assert sorted(len(r["input_ids"]) for c in chunks for r in c) == [10, 30, 50, 60, 100, 120]
    assert all(len(c) * max(len(r["input_ids"]) for r in c) <= 200 for c in chunks if len(c) > 1)
    assert [len(c) for c in micro_batches(examples, 6)] == [6]  # no cap: one micro-batch


def test_a_row_longer_than_the_cap_goes_alone():
    assert [len(c) for c in micro_batches(rows(300, 20, 20), 3, max_tokens=100)] == [2, 1]


@pytest.mark.parametrize(
    ("value", "device", "cap"),
    [("auto", "cpu", 256), ("auto", "cuda", None), (None, "cpu", None), (1024, "cuda", 1024)],
)
def test_auto_cap_depends_on_the_device(value, device, cap):
    assert TrainSettings(micro_batch_tokens=value).token_cap(device) == cap


def test_the_cap_is_not_a_trajectory_setting():
    assert "micro_batch_tokens" not in TrainSettings().trajectory()
