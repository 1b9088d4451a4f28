"""The prefix cache hands back exactly the keys and values of a shared prompt start, per adapter, in budget."""

from __future__ import annotations

import torch

from openrecipe.serve.engines.prefix_cache import PrefixCache, Prompt

LAYERS, HEADS, DIM = 2, 3, 4


def prefilled(prompts: list[Prompt]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """Left-padded keys/values whose entries encode (token id, layer), as a batch prefill would leave them."""
    length = max(len(p.ids) for p in prompts)
    attention = torch.zeros(len(prompts), length, dtype=torch.long)
    token = torch.full((len(prompts), length), -1.0)
    for row, prompt in enumerate(prompts):
        attention[row, length - len(prompt.ids) :] = 1
        token[row, length - len(prompt.ids) :] = torch.tensor(prompt.ids, dtype=torch.float)
    layers = []
    for layer in range(LAYERS):
        keys = token[:, None, :, None].expand(-1, HEADS, -1, DIM) + 1000 * layer
        layers.append((keys.contiguous(), -keys.contiguous()))
    return layers, attention


def test_a_prefix_is_learned_from_two_prompts_and_reused_only_where_every_prompt_extends_it():
    cache = PrefixCache(min_tokens=3)
    system = tuple(range(10, 20))
    first, second = Prompt(None, (*system, 1, 2)), Prompt(None, (*system, 3))
    cache.learn([first], *prefilled([first]))
    assert cache.longest([second]) is None  # seen once: nothing shared yet
    cache.learn([second], *prefilled([second]))
    size, layers = cache.longest([Prompt(None, (*system, 7, 8)), Prompt(None, (*system, 9))])
    assert size == len(system)
    for layer, (keys, values) in enumerate(layers):
        assert keys.shape == (2, HEADS, len(system), DIM)  # one row per prompt asking
        assert torch.equal(keys[1, 0, :, 0], torch.tensor(system, dtype=torch.float) + 1000 * layer)
        assert torch.equal(values, -keys)
    assert cache.hit_tokens == 2 * len(system)
    assert cache.longest([Prompt(None, system)]) is None  # nothing of its own would be left to run
    assert cache.longest([Prompt(None, (*system, 1)), Prompt(None, (1, 2, 3, 4))]) is None
    assert cache.longest([Prompt("nova", (*system, 1))]) is None  # an adapter changes keys and values


def test_prompts_of_one_batch_teach_each_other_through_their_padding():
    cache = PrefixCache(min_tokens=2)
    short, long = Prompt(None, (5, 6, 7, 1)), Prompt(None, (5, 6, 7, 2, 3, 4, 8))
    cache.learn([short, long], *prefilled([short, long]))
    size, layers = cache.longest([Prompt(None, (5, 6, 7, 9))])
    assert size == 3 and torch.equal(layers[0][0][0, 0, :, 0], torch.tensor([5.0, 6.0, 7.0]))


def test_entries_stay_within_the_token_budget_oldest_first_and_clear_forgets():
    cache = PrefixCache(min_tokens=2, max_tokens=7)
    for start in (100, 200, 300):
        pair = [Prompt(None, (start, start + 1, start + 2, 1)), Prompt(None, (start, start + 1, start + 2, 2))]
        cache.learn(pair, *prefilled(pair))
    assert cache.longest([Prompt(None, (100, 101, 102, 5))]) is None  # evicted: 3 entries of 3 tokens > 7
    assert cache.longest([Prompt(None, (300, 301, 302, 5))])[0] == 3
    cache.clear()
    assert cache.longest([Prompt(None, (300, 301, 302, 5))]) is None


def test_a_batch_mixing_adapters_gets_each_row_its_own_adapter_entry():
    cache = PrefixCache(min_tokens=2)
    for adapter, offset in (("nova", 0.0), ("lumen", 0.5)):
        pair = [Prompt(adapter, (5, 6, 7, 1)), Prompt(adapter, (5, 6, 7, 2))]
        layers, attention = prefilled(pair)
        cache.learn(pair, [(keys + offset, values) for keys, values in layers], attention)
    size, layers = cache.longest([Prompt("lumen", (5, 6, 7, 9)), Prompt("nova", (5, 6, 7, 8, 8))])
    assert size == 3
    assert torch.equal(layers[0][0][:, 0, 0, 0], torch.tensor([5.5, 5.0]))
    assert cache.longest([Prompt("lumen", (5, 6, 7, 9)), Prompt(None, (5, 6, 7, 8))]) is None
    # what the engine groups a prefill by: each prompt's own stored start, 0 where it has none
    assert [cache.shared_length([p]) for p in (Prompt("lumen", (5, 6, 7, 9)), Prompt(None, (5, 6, 7, 8)))] == [3, 0]
    assert cache.shared_length([Prompt("nova", (5, 6, 7))]) == 0  # a start must leave tokens of its own
