"""A rung is a deterministic function of its settings and seed: the same seed in another folder gives the
same losses (so the same fitted coefficients); a result trained with other settings is not reused."""

import json

import numpy as np

from openrecipe.ladder.corpus import Corpus
from openrecipe.ladder.family import FamilySettings
from openrecipe.ladder.pretrain import RungSpec, TrainDefaults, train_rung


def _corpus() -> Corpus:
    rng = np.random.default_rng(0)
    text = np.frombuffer(("def f(x):\n    return x + 1\n" * 400).encode(), dtype=np.uint8).astype(np.uint16)
    noise = rng.integers(32, 127, size=2000).astype(np.uint16)
    return Corpus(train=text, eval=np.concatenate([text[:2000], noise]), meta={})


def test_same_seed_same_result_in_another_folder(tmp_path):
    family = FamilySettings(head_dim=4, block_size=16)
    spec = RungSpec(width=8, depth=1, tokens=1024, learning_rate=1e-2, batch_size=4, seed=3)
    defaults = TrainDefaults(eval_blocks=8)
    first = train_rung(spec, _corpus(), family, tmp_path / "a", defaults)
    second = train_rung(spec, _corpus(), family, tmp_path / "b", defaults)
    assert first["eval_loss"] == second["eval_loss"] and first["curve"] == second["curve"]
    other_seed = train_rung(
        RungSpec(width=8, depth=1, tokens=1024, learning_rate=1e-2, batch_size=4, seed=4),
        _corpus(),
        family,
        tmp_path / "c",
        defaults,
    )
    assert other_seed["eval_loss"] != first["eval_loss"]


def test_a_result_from_other_settings_is_trained_again(tmp_path):
    family = FamilySettings(head_dim=4, block_size=16)
    spec = RungSpec(width=8, depth=1, tokens=512, learning_rate=1e-2, batch_size=4, seed=0)
    train_rung(spec, _corpus(), family, tmp_path, TrainDefaults(eval_blocks=8))
    again = train_rung(spec, _corpus(), family, tmp_path, TrainDefaults(eval_blocks=16))
    assert again["train_settings"]["defaults"]["eval_blocks"] == 16
    assert json.loads((tmp_path / "result.json").read_text())["train_settings"]["defaults"]["eval_blocks"] == 16
