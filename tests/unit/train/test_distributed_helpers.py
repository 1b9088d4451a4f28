"""FSDP2 units and the multi-machine pre-flight, without starting processes."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from openrecipe.train.distributed import _differences, decoder_layers, fingerprint


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
