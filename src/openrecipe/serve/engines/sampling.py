"""Per-row token choice for the transformers engine: penalties, temperature, top-p, logprobs, detokenizing.

Written against plain tensors because each row of a batch carries its own settings and its own seed;
transformers' logits processors act on a whole batch with one setting.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from typing import Any

import torch

from openrecipe.serve.engines.base import GenerationRequest, TokenLogprob


@dataclass
class RowSampler:
    request: GenerationRequest
    generator: torch.Generator | None = None
    counts: collections.Counter[int] = field(default_factory=collections.Counter)
    constraint: Any = None  # structured.RowConstraint when the reply must follow a grammar

    @classmethod
    def for_request(cls, request: GenerationRequest, device: torch.device, constraint: Any = None) -> RowSampler:
        generator = None
        if request.temperature > 0:
            generator = torch.Generator(device=device)
            generator.manual_seed(request.seed if request.seed is not None else torch.seed())
        return cls(request, generator, constraint=constraint)

    def pick(self, logits: torch.Tensor) -> int:
        """Choose the next token; the most likely token always survives top-p, so the draw is never empty."""
        request = self.request
        scores = logits.float()
        if self.counts and (request.presence_penalty or request.frequency_penalty):
            ids = torch.tensor(list(self.counts), device=scores.device)
            seen = torch.tensor(list(self.counts.values()), device=scores.device, dtype=scores.dtype)
            scores = scores.clone()
            scores[ids] -= request.presence_penalty + request.frequency_penalty * seen
        if request.logit_bias:
            scores = scores.clone() if scores is logits else scores
            ids = torch.tensor(list(request.logit_bias), device=scores.device)
            scores[ids] += torch.tensor(list(request.logit_bias.values()), device=scores.device, dtype=scores.dtype)
        if self.constraint is not None:
            scores = self.constraint.mask(scores)
        if request.temperature <= 0:
            return int(scores.argmax())
        probs = torch.softmax(scores / request.temperature, dim=-1)
        if request.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = (sorted_probs.cumsum(-1) - sorted_probs) < request.top_p
            keep[0] = True
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        if not torch.isfinite(probs).all() or float(probs.sum()) <= 0:
            return int(scores.argmax())
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def record(self, token: int) -> None:
        self.counts[token] += 1
        if self.constraint is not None:
            self.constraint.advance(token)

    def grammar_complete(self) -> bool:
        return self.constraint is not None and self.constraint.finished()


def token_logprob(tokenizer, logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    """The chosen token's log-probability under the model (before penalties and temperature) and the top ones."""
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    alternatives: list[tuple[str, float]] = []
    if top > 0:
        values, ids = logprobs.topk(top)
        alternatives = [(tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids, strict=True)]
    return TokenLogprob(tokenizer.decode([token]), float(logprobs[token]), alternatives)


def prompt_logprobs(tokenizer, logits: torch.Tensor, prompt_ids: list[int], top: int) -> list[TokenLogprob]:
    """Log-probabilities of each prompt token given the ones before it (the first has none)."""
    scored = [TokenLogprob(tokenizer.decode([prompt_ids[0]]), None)]
    for position in range(1, len(prompt_ids)):
        scored.append(token_logprob(tokenizer, logits[position - 1], prompt_ids[position], top))
    return scored


class Detokenizer:
    """Incremental text for one row that never ends inside a UTF-8 character.

    Uses the tokenizers library's DecodeStream (constant work per token) when the tokenizer is a fast one;
    otherwise re-decodes and holds back a trailing replacement character.
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.text = ""
        backend = getattr(tokenizer, "_tokenizer", None)
        self._backend = backend
        self._stream = None
        self._ids: list[int] = []
        if backend is not None:
            from tokenizers.decoders import DecodeStream

            self._stream = DecodeStream(skip_special_tokens=True)

    def add(self, token: int) -> str:
        if self._stream is not None:
            piece = self._stream.step(self._backend, token)
            if piece:
                self.text += piece
            return self.text
        self._ids.append(token)
        decoded = self.tokenizer.decode(self._ids, skip_special_tokens=True)
        self.text = decoded.rstrip("\ufffd") if decoded.endswith("\ufffd") else decoded
        return self.text
