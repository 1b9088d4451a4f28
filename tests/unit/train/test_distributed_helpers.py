"""FSDP2 units and the multi-machine pre-flight, without starting processes."""

import importlib.util

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from openrecipe.errors import OpenRecipeError
from openrecipe.train.config import TrainSettings
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


def test_deepspeed_where_it_cannot_run_names_what_is_missing():
    with pytest.raises(OpenRecipeError) as error:
        check_strategy("deepspeed", torch.device("cpu"), "DistributedType.NO")
    text = error.value.format()
    assert "DeepSpeed ZeRO needs CUDA GPUs and this run is on cpu" in text
    assert ("deepspeed package is not installed" in text) == (importlib.util.find_spec("deepspeed") is None)
    assert "use strategy: fsdp" in text


def test_a_strategy_that_contradicts_the_accelerate_config_is_refused():
    check_strategy("ddp", torch.device("cpu"), "DistributedType.MULTI_CPU")
    check_strategy("fsdp", torch.device("cpu"), "DistributedType.FSDP")
    with pytest.raises(OpenRecipeError, match="accelerate config launches FSDP, but train.distributed.strategy is ddp"):
        check_strategy("ddp", torch.device("cpu"), "DistributedType.FSDP")


def test_the_strategy_is_not_part_of_the_trajectory():
    ddp, fsdp = TrainSettings(), TrainSettings(distributed={"strategy": "fsdp", "timeout_s": 60})
    assert ddp.trajectory() == fsdp.trajectory()
