"""Search dimensions are parsed once into typed values; mistakes name the part that is wrong."""

import optuna
import pytest

from openrecipe.errors import OpenRecipeError
from openrecipe.sweep.space import overrides_for, parse_dimension, parse_space


def test_forms_parse_into_typed_dimensions():
    lr = parse_dimension("train.learning_rate=loguniform(1e-5, 3e-3)", stage="sft")
    assert (lr.path, lr.kind, lr.low, lr.high) == ("stages.sft.train.learning_rate", "loguniform", 1e-5, 3e-3)
    rank = parse_dimension("train.lora.rank=[4,16,64]", stage="sft")
    assert rank.kind == "choice" and rank.choices == (4, 16, 64)
    assert parse_dimension("seed=int(0,3)", stage="sft").path == "seed"  # a full recipe path stays as it is
    assert parse_dimension("stages.cpt.block_size=[32,64]", stage="sft").path == "stages.cpt.block_size"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("train.learning_rate", "PATH=VALUES"),
        ("lr=loguniform(0,1)", "positive"),
        ("lr=uniform(2,1)", "below"),
        ("lr=normal(0,1)", "cannot read"),
        ("rank=int(1.5,4)", "whole numbers"),
        ("rank=[]", "empty"),
        ("rank=[4,4]", "twice"),
    ],
)
def test_mistakes_are_user_errors(spec, words):
    with pytest.raises(OpenRecipeError, match=words):
        parse_dimension(spec)


def test_same_setting_twice_is_refused():
    with pytest.raises(OpenRecipeError, match="searched twice"):
        parse_space(["train.learning_rate=[1e-4]", "stages.sft.train.learning_rate=[2e-4]"], stage="sft")


def test_recipe_block_accepts_lists_and_ranges():
    dims = parse_space({"train.lora.rank": [4, 8], "train.learning_rate": "loguniform(1e-4,1e-3)"}, stage="sft")
    assert [d.kind for d in dims] == ["choice", "loguniform"]


def test_suggestions_stay_inside_the_range_and_become_typed_overrides():
    dims = parse_space(["train.learning_rate=loguniform(1e-5,3e-3)", "train.lora.rank=logint(4,64)"], stage="sft")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = {d.path: d.suggest(trial) for d in dims}
        assert 1e-5 <= params["stages.sft.train.learning_rate"] <= 3e-3
        assert isinstance(params["stages.sft.train.lora.rank"], int)
        study.tell(trial, 0.0)
    assert overrides_for({"stages.sft.train.lora.rank": 16, "x.flag": True, "x.name": "a b"}) == [
        "stages.sft.train.lora.rank=16",
        "x.flag=true",
        "x.name=a b",
    ]


def test_grid_needs_listed_values():
    with pytest.raises(OpenRecipeError, match="grid sampler"):
        parse_dimension("lr=loguniform(1e-5,1e-3)").grid_values()
    assert parse_dimension("rank=int(2,4)").grid_values() == [2, 3, 4]
