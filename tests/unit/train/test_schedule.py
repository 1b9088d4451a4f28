import itertools

import pytest

from openrecipe.train.config import ScheduleSettings, TrainSettings
from openrecipe.train.schedule import lr_at


def test_warmup_then_cosine_to_floor():
    settings = ScheduleSettings(kind="cosine", warmup_steps=2, min_lr_ratio=0.1)
    values = [lr_at(step, 1.0, 12, settings) for step in range(12)]
    assert values[:2] == [0.5, 1.0]
    assert values[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(values[2:]))
    assert lr_at(12, 1.0, 12, settings) == pytest.approx(0.1)


def test_linear_and_constant_and_ratio():
    assert lr_at(5, 2.0, 10, ScheduleSettings(kind="linear")) == pytest.approx(1.0)
    assert lr_at(7, 2.0, 10, ScheduleSettings(kind="constant")) == 2.0
    assert lr_at(0, 1.0, 10, ScheduleSettings(kind="constant", warmup_ratio=0.5)) == pytest.approx(0.2)


def test_batch_must_divide():
    with pytest.raises(ValueError, match="multiple of micro_batch_size"):
        TrainSettings(batch_size=8, micro_batch_size=3)
    assert TrainSettings(batch_size=8, micro_batch_size=2).accumulation == 4
