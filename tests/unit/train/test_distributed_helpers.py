"""FSDP2 units and the multi-machine pre-flight, without starting processes."""

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from openrecipe.errors import OpenRecipeError
from openrecipe.train.config import DistributedSettings, TrainSettings
from openrecipe.train.distributed import _differences, check_strategy, decoder_layers, fingerprint


def test_decoder_layers_are_the_models_unsplittable_blocks():
    config = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=3, num_attention_heads=2
    )
    layers = decoder_layers(LlamaForCausalLM(config))
    assert [type(layer).__name__ for layer in layers] == ["LlamaDecoderLayer"] * 3


def test_no_layers_in_a_plain_module():
    assert decoder_layers(torch.nn.Linear(2, 2)) == []


def test_preflight_names_the_rank_and_what_differs():
    same = {"recipe": "a", "data": "b", "model": "c"}
    assert list(_differences([same, dict(same), dict(same)])) == []
    problems = list(_differences([same, same, {**same, "data": "x"}]))
    assert problems == ["rank 2 has data 'x', rank 0 has 'b'"]
    assert next(iter(_differences([same, {"recipe": "a"}]))).startswith("rank 1 has data None")


def test_fingerprint_is_order_independent():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def _settings(**distributed) -> DistributedSettings:
    return TrainSettings(distributed=distributed).distributed


def test_deepspeed_without_its_package_names_what_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(OpenRecipeError) as error:
        check_strategy(_settings(strategy="deepspeed"), {})
    text = error.value.format()
    assert "deepspeed package, which is not installed" in text
    assert "pip install --no-build-isolation deepspeed" in text and "strategy: fsdp" in text


def test_a_strategy_that_contradicts_the_accelerate_config_is_refused():
    check_strategy(_settings(strategy="ddp"), {})
    check_strategy(_settings(strategy="fsdp"), {"ACCELERATE_USE_FSDP": "true"})
    with pytest.raises(OpenRecipeError, match="accelerate config launches FSDP, but train.distributed.strategy is ddp"):
        check_strategy(_settings(strategy="ddp"), {"ACCELERATE_USE_FSDP": "true"})
    with pytest.raises(OpenRecipeError, match="launches DEEPSPEED, but train.distributed.strategy is fsdp"):
        check_strategy(_settings(strategy="fsdp"), {"ACCELERATE_USE_DEEPSPEED": "true"})


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_an_accelerate_config_with_another_zero_stage_is_refused():
    launch = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}
    check_strategy(_settings(strategy="deepspeed", zero_stage=3), launch)
    with pytest.raises(OpenRecipeError) as error:
        check_strategy(_settings(strategy="deepspeed"), launch)
    text = error.value.format()
    assert "launches DeepSpeed ZeRO stage 3, but the recipe's train.distributed.zero_stage is 2" in text
    assert "zero_stage: 3" in text


def test_zero_stage_belongs_to_deepspeed():
    assert _settings(strategy="deepspeed").stage == 2
    assert _settings(strategy="deepspeed", zero_stage=3).stage == 3
    with pytest.raises(ValueError, match="zero_stage applies to strategy: deepspeed, not fsdp"):
        _settings(strategy="fsdp", zero_stage=3)


def test_the_strategy_is_not_part_of_the_trajectory():
    ddp, fsdp = TrainSettings(), TrainSettings(distributed={"strategy": "fsdp", "timeout_s": 60})
    assert ddp.trajectory() == fsdp.trajectory()
