"""Scoring text with a model: perplexity on held-out text, option log-likelihoods."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from openrecipe.models.loading import LoadedModel


def _blocks(tokenizer, texts: Sequence[str], block_size: int) -> list[list[int]]:
    """Each text tokenized on its own (BOS-free) and cut into blocks; no block spans two texts."""
    blocks = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        blocks += [ids[start : start + block_size] for start in range(0, len(ids), block_size)]
    return [block for block in blocks if len(block) > 1]


def _right_padded(rows: Sequence[Sequence[int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one right-padded id tensor and its attention mask."""
    length = max(len(row) for row in rows)
    ids = torch.zeros((len(rows), length), dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(list(row))
        mask[index, : len(row)] = 1
    return ids.to(device), mask.to(device)


@torch.inference_mode()
def token_log_probs(loaded: LoadedModel, rows: Sequence[Sequence[int]], *, batch_size: int = 8) -> list[torch.Tensor]:
    """For each row of token ids, the float32 log-distribution over the vocabulary after each of its tokens but
    the last ([len - 1, vocab]). Rows of similar length run together, right-padded and masked, so padding
    changes nothing but float rounding (one row at a time costs ~2x on a CPU)."""
    out: list[torch.Tensor] = [torch.empty(0)] * len(rows)
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = _right_padded([rows[index] for index in chunk], loaded.device)
        logits = loaded.model(input_ids=ids, attention_mask=mask, use_cache=False)
        for row, index in enumerate(chunk):
            out[index] = torch.log_softmax(logits.logits[row, : len(rows[index]) - 1].float(), dim=-1).cpu()
    return out


@torch.inference_mode()
def perplexity(loaded: LoadedModel, texts: Sequence[str], *, block_size: int = 256, batch_size: int = 8) -> dict:
    """Token-weighted perplexity over the texts; also returns the token count it was measured on."""
    blocks = _blocks(loaded.tokenizer, texts, block_size)
    total_nll, total_tokens = 0.0, 0
    model = loaded.model
    for start in range(0, len(blocks), batch_size):
        ids, mask = _right_padded(blocks[start : start + batch_size], loaded.device)
        logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = ids[:, 1:]
        token_ll = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        valid = mask[:, 1:].bool()
        total_nll -= float(token_ll[valid].sum())
        total_tokens += int(valid.sum())
    if total_tokens == 0:
        return {"perplexity": float("nan"), "tokens": 0}
    return {"perplexity": math.exp(total_nll / total_tokens), "tokens": total_tokens}
