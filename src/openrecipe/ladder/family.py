"""A model family: one Llama architecture config, scaled by width and depth only, so rungs differ in size
and in nothing else (head size, MLP ratio, norms, vocabulary and context stay fixed)."""

from __future__ import annotations

from pydantic import Field

from openrecipe.config.base import StrictModel


class Size(StrictModel):
    width: int = Field(ge=8, description="Hidden size; a multiple of head_dim")
    depth: int = Field(ge=1, description="Number of transformer layers")


class FamilySettings(StrictModel):
    head_dim: int = Field(16, ge=4)
    mlp_ratio: float = Field(8 / 3, gt=0, description="MLP hidden size as a multiple of the width")
    block_size: int = Field(128, ge=8, description="Tokens per training sequence")


def llama_config(family: FamilySettings, size: Size, vocab_size: int):
    from transformers import LlamaConfig

    if size.width % family.head_dim:
        raise ValueError(f"width {size.width} is not a multiple of head_dim {family.head_dim}")
    intermediate = max(8, round(size.width * family.mlp_ratio / 8) * 8)
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.width,
        intermediate_size=intermediate,
        num_hidden_layers=size.depth,
        num_attention_heads=size.width // family.head_dim,
        num_key_value_heads=size.width // family.head_dim,
        max_position_embeddings=family.block_size,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )


def non_embedding_params(family: FamilySettings, size: Size) -> int:
    """Parameters outside the (tied) embedding, counted from the config as the model would build them."""
    width, depth = size.width, size.depth
    intermediate = max(8, round(width * family.mlp_ratio / 8) * 8)
    per_layer = 4 * width * width + 3 * width * intermediate + 2 * width  # attention, MLP, two RMSNorms
    return depth * per_layer + width  # final norm


def flops_per_token(family: FamilySettings, size: Size, vocab_size: int) -> float:
    """Training FLOPs per token: 6 x (non-embedding + output-layer parameters) + attention over the block."""
    dense = non_embedding_params(family, size) + vocab_size * size.width
    attention = 6 * size.depth * family.block_size * size.width
    return 6.0 * dense + attention
