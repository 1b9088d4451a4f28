"""The training forward pass: the loss summed over trained tokens, with the LM head applied only where
a token carries loss.

Why by hand: a causal LM's forward computes logits for every position (vocab 49,152 × sequence × batch
for the default model) even though SFT masks prompts, system text and padding. Running the decoder,
selecting the trained positions, then the head, skips that work (the head is ~20% of the model's FLOPs
here). Models whose logits are post-processed (soft-capping, logit scales) use the plain forward.

A start that every row of a micro-batch shares and that carries no loss (the recipe's system turn, ~24 of
~70 tokens per row in the demo) runs once: its keys and values are repeated for each row and the rows'
own tokens attend to them. Gradients flow back through the repeat, so loss and gradients are those of the
full forward up to float rounding, for (rows - 1) x the shared tokens less work. Hand-written: transformers'
Trainer and PEFT have no option that shares a prefix across the rows of a training batch.
"""

from __future__ import annotations

import torch
from torch import nn

from openrecipe.data.tokenize import IGNORE_INDEX

_POSTPROCESSED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
MIN_SHARED_TOKENS = 16  # a shorter shared start saves less than its extra forward call costs
# Measured on a 2-core AVX2 CPU, LoRA on the default model, demo data (24-token system turn, rows ~80 tokens):
# 4 rows (72 tokens saved) ran 0.98x, 8 rows (168 saved) 1.18x — the extra call and smaller matmuls eat
# small savings.
MIN_SAVED_TOKENS = 128


def shared_start(input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """How many leading tokens every row has in common, unpadded and without loss (label i+1 is predicted
    at position i, so labels 1..P must be ignored); 0 when fewer than MIN_SHARED_TOKENS or one row. Each row
    keeps at least two tokens of its own; 0 too when sharing would save fewer than MIN_SAVED_TOKENS."""
    rows, length = input_ids.shape
    if rows < 2 or attention_mask is None:
        return 0
    same = (input_ids == input_ids[:1]).all(dim=0) & attention_mask.bool().all(dim=0)
    no_loss = torch.ones(length, dtype=torch.bool, device=input_ids.device)
    no_loss[: length - 1] = (labels[:, 1:] == IGNORE_INDEX).all(dim=0)
    usable = same & no_loss
    shortest = int(attention_mask.sum(dim=1).min())
    prefix = int(usable.long().cumprod(dim=0).sum())
    prefix = min(prefix, shortest - 2)
    return prefix if prefix >= MIN_SHARED_TOKENS and (rows - 1) * prefix >= MIN_SAVED_TOKENS else 0


class TrainedTokenLoss(nn.Module):
    """Wraps a causal LM (or a PeftModel); forward returns the summed cross-entropy over trained tokens."""

    def __init__(self, causal_lm: nn.Module, *, share_prefix: bool = False) -> None:
        super().__init__()
        self.causal_lm = causal_lm
        # Off for compiled bodies (fixed shapes), gradient checkpointing (it turns the cache off) and sharded
        # or replicated runs (their hooks expect one call per module per forward).
        self.share_prefix = share_prefix
        base = causal_lm.get_base_model() if hasattr(causal_lm, "get_base_model") else causal_lm
        config = getattr(base, "config", None)
        decoder = getattr(base, "model", None)
        head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
        plain = any(getattr(config, name, None) for name in _POSTPROCESSED_LOGITS)
        self._split = None if plain or decoder is None or not isinstance(head, nn.Linear) else (decoder, head)
        self._compiled: nn.Module | None = None

    def compile_body(self) -> None:
        """torch.compile the decoder (or the whole model without a split), with static shapes: one graph per
        padded shape. Only training forwards use it; evaluation and probes stay eager, so their shapes never
        compile. The compiled module is held outside the module tree: parameter names do not change."""
        import torch._dynamo

        body = self.causal_lm if self._split is None else self._split[0]
        # Each bucketed shape is one compile of the same code: allow as many as there are buckets.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit, 256)
        self.__dict__["_compiled"] = torch.compile(body, dynamic=False)

    def _body(self, eager: nn.Module) -> nn.Module:
        if self._compiled is not None and self.training and torch.is_grad_enabled():
            return self._compiled
        return eager

    def forward(
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        targets = labels[:, 1:]
        keep = targets != IGNORE_INDEX
        if self._split is None:
            logits = self._body(self.causal_lm)(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).logits[:, :-1]
            return nn.functional.cross_entropy(logits[keep].float(), targets[keep], reduction="sum")
        decoder, head = self._split
        shared = 0
        if self.share_prefix and self._compiled is None and position_ids is None:
            shared = shared_start(input_ids, labels, attention_mask)
        if shared:
            hidden = self._after_shared_start(decoder, input_ids, attention_mask, shared)[:, :-1]
            targets = labels[:, shared + 1 :]
            keep = targets != IGNORE_INDEX
        else:
            hidden = self._body(decoder)(
                input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
            ).last_hidden_state[:, :-1]
        logits = head(hidden[keep]).float()
        return nn.functional.cross_entropy(logits, targets[keep], reduction="sum")

    @staticmethod
    def _after_shared_start(
        decoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, shared: int
    ) -> torch.Tensor:
        """Hidden states of positions `shared`.. of every row, the first `shared` tokens run once."""
        from transformers import DynamicCache

        from openrecipe.models.generation import cache_keyword

        cache = DynamicCache(config=decoder.config)
        keyword = cache_keyword(decoder)
        decoder(input_ids=input_ids[:1, :shared], use_cache=True, **{keyword: cache})
        cache.batch_repeat_interleave(input_ids.shape[0])
        return decoder(
            input_ids=input_ids[:, shared:], attention_mask=attention_mask, use_cache=True, **{keyword: cache}
        ).last_hidden_state
