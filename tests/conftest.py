"""Shared fixtures: the real default model's tokenizer and tiny Llama models built in code."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PEER_DATA = REPO_ROOT.parent / "shared" / "peer-data"


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The converted default model (converted once per machine into the openrecipe cache)."""
    from openrecipe.models.default import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def tokenizer(default_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_model_dir))


def build_tiny_llama(out_dir: Path, tokenizer, *, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """A 2-layer Llama (hidden 64) with the default model's real tokenizer and chat template."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", tokenizer)


@pytest.fixture(scope="session")
def tiny_model_dir_b(tmp_path_factory, tokenizer) -> Path:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_b") / "model", tokenizer, seed=1)


@pytest.fixture
def peer_data() -> Path:
    if not PEER_DATA.is_dir():
        pytest.skip("../shared/peer-data is not present")
    return PEER_DATA
