"""The epoch order, the held-out split and the data fingerprint are the same whether a source is a list or
blocks on disk read by index."""

import numpy as np

from openrecipe.data.blocks import PackedBlocks, pack_texts_to_disk
from openrecipe.stages.sft import split_eval
from openrecipe.train.batching import EpochOrder, TrainData, epoch_order, held_out
from openrecipe.utils.hashing import sha256_json


def _examples(count: int, tag: int) -> list[dict[str, list[int]]]:
    return [{"input_ids": [tag, i, i + 1], "labels": [-100, i, i + 1]} for i in range(count)]


def _reference_order(data: TrainData, epoch: int, seed: int) -> list:
    """The epoch order written the plain way: every example picked into one list, then shuffled."""
    order = []
    for index, (name, count) in enumerate(sorted(data.counts().items())):
        items, rng, picks = data.sources[name], np.random.default_rng([seed, index, epoch]), []
        while len(picks) < count:
            picks.extend(rng.permutation(len(items)).tolist())
        order.extend(items[i] for i in picks[:count])
    shuffle = np.random.default_rng([seed, 1_000_003, epoch]).permutation(len(order))
    return [order[i] for i in shuffle]


def test_epoch_order_is_read_lazily_and_equals_the_plain_order():
    data = TrainData({"big": _examples(40, 1), "small": _examples(7, 2)}, {"big": 0.5, "small": 0.5})
    for epoch in range(3):
        order = epoch_order(data, epoch, seed=11)
        assert isinstance(order, EpochOrder)
        expected = _reference_order(data, epoch, seed=11)
        assert len(order) == len(expected) == data.epoch_size()
        assert order[:] == expected and order[5:9] == expected[5:9] and order[-1] == expected[-1]
    assert epoch_order(data, 0, seed=11)[:] != epoch_order(data, 1, seed=11)[:]


def test_held_out_matches_split_eval_and_honours_the_limit():
    examples = _examples(50, 3)
    train, held = held_out(50, 0.2, seed=5, salt=1)
    assert len(held) == 10 and sorted(set(train) | set(held)) == list(range(50))
    assert split_eval(examples, 0.2, 5, 1) == ([examples[i] for i in train], [examples[i] for i in held])
    limited_train, limited = held_out(50, 0.2, seed=5, salt=1, limit=4)
    assert len(limited) == 4 and set(limited) <= set(held) and len(limited_train) == 46
    assert len(held_out(9, 0.5, seed=5, salt=1)[1]) == 0  # too few examples to hold any out


def test_blocks_on_disk_train_like_the_same_blocks_in_memory(tokenizer, tmp_path):
    texts = [f"Paragraph {i}: " + "the quick brown fox " * (i % 5 + 1) for i in range(80)]
    blocks, _ = pack_texts_to_disk(tokenizer, iter(texts), 16, tmp_path / "blocks")
    train, held = held_out(len(blocks), 0.1, seed=3, salt=0)
    on_disk = TrainData({"d": blocks.take(train)}, {"d": 1.0}, blocks.take(held)[:])
    in_memory = TrainData({"d": [blocks[i] for i in train]}, {"d": 1.0}, [blocks[i] for i in held])
    assert on_disk.describe() == in_memory.describe()
    assert epoch_order(on_disk, 1, seed=2)[:] == epoch_order(in_memory, 1, seed=2)[:]

    reopened = PackedBlocks(tmp_path / "blocks")
    same = TrainData({"d": reopened.take(train)}, {"d": 1.0}, reopened.take(held)[:])
    assert same.fingerprint() == on_disk.fingerprint()
    other_split = TrainData({"d": reopened.take(train[1:])}, {"d": 1.0}, reopened.take(held)[:])
    assert other_split.fingerprint() != on_disk.fingerprint()


def test_fingerprint_of_lists_is_the_hash_of_their_content():
    data = TrainData({"a": _examples(3, 1)}, {"a": 1.0}, _examples(2, 9))
    assert data.fingerprint() == sha256_json({"sources": data.sources, "weights": data.weights, "eval": data.eval})
    data.sources["a"][0]["labels"][1] = 7
    assert data.fingerprint() != TrainData({"a": _examples(3, 1)}, {"a": 1.0}, _examples(2, 9)).fingerprint()
