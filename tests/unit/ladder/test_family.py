"""The family scales by width and depth only; the parameter count matches the built model; the corpus
is the standard library's bytes, split by file."""

from pathlib import Path

import numpy as np
import pytest

from openrecipe.ladder.corpus import END_OF_DOCUMENT, prepare_corpus
from openrecipe.ladder.family import FamilySettings, Size, llama_config, non_embedding_params


@pytest.mark.parametrize("size", [Size(width=16, depth=1), Size(width=48, depth=3)])
def test_non_embedding_count_matches_the_model(size):
    from transformers import LlamaForCausalLM

    family = FamilySettings(head_dim=8, block_size=32)
    model = LlamaForCausalLM(llama_config(family, size, 257))
    total = sum(p.numel() for p in model.parameters())
    assert total - model.get_input_embeddings().weight.numel() == non_embedding_params(family, size)


def test_corpus_is_bytes_split_by_file_and_reused(tmp_path):
    root = tmp_path / "lib"
    (root / "pkg").mkdir(parents=True)
    for index in range(60):
        (root / "pkg" / f"m{index}.py").write_text(f"def f{index}():\n    return {index}\n")
    (root / "site-packages").mkdir()
    (root / "site-packages" / "other.py").write_text("x = 1\n")
    corpus = prepare_corpus(tmp_path / "out", root=root, eval_percent=20)
    assert corpus.meta["files"] == 60 and 0 < corpus.meta["eval_files"] < 60
    assert corpus.train.max() == END_OF_DOCUMENT and corpus.train.dtype == np.uint16
    text = bytes(corpus.train[corpus.train < 256].astype(np.uint8)).decode()
    assert "def f" in text and "x = 1" not in text
    again = prepare_corpus(tmp_path / "out", root=root, eval_percent=20)
    assert np.array_equal(again.train, corpus.train) and again.meta == corpus.meta
    assert Path(tmp_path / "out" / "corpus.json").is_file()
