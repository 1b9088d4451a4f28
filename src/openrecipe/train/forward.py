"""The training forward pass: the loss summed over trained tokens, with the LM head applied only where
a token carries loss.

Why by hand: a causal LM's forward computes logits for every position (vocab 49,152 × sequence × batch
for the default model) even though SFT masks prompts, system text and padding. Running the decoder,
selecting the trained positions, then the head, skips that work (the head is ~20% of the model's FLOPs
here). Models whose logits are post-processed (soft-capping, logit scales) use the plain forward.
"""

from __future__ import annotations

import torch
from torch import nn

from openrecipe.data.tokenize import IGNORE_INDEX

_POSTPROCESSED_LOGITS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


class TrainedTokenLoss(nn.Module):
    """Wraps a causal LM (or a PeftModel); forward returns the summed cross-entropy over trained tokens."""

    def __init__(self, causal_lm: nn.Module) -> None:
        super().__init__()
        self.causal_lm = causal_lm
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
        hidden = self._body(decoder)(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state[:, :-1]
        logits = head(hidden[keep]).float()
        return nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
