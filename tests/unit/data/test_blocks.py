"""Blocks packed on disk equal the in-memory packing, token for token and position for position."""

from openrecipe.data.blocks import PackedBlocks, pack_texts_to_disk
from openrecipe.data.tokenize import pack_texts


def test_disk_packing_matches_memory_packing(tokenizer, tmp_path):
    texts = [f"Document {index}: " + "words and more words " * (index % 7 + 1) for index in range(60)]
    texts[5] = "<|im_end|> 你好 🙂 def f(x):\n    return x  # special-token text and any script"
    expected, expected_stats = pack_texts(tokenizer, texts, 32)
    blocks, stats = pack_texts_to_disk(tokenizer, iter(texts), 32, tmp_path / "blocks", batch_documents=7)
    assert len(blocks) == len(expected) > 10
    assert [blocks[i] for i in range(len(blocks))] == expected
    assert stats.to_json() == expected_stats.to_json()
    reopened = PackedBlocks(tmp_path / "blocks")
    assert reopened[-1] == expected[-1] and reopened.fingerprint == blocks.fingerprint
    other, _ = pack_texts_to_disk(tokenizer, texts[1:], 32, tmp_path / "other")
    assert other.fingerprint != blocks.fingerprint
