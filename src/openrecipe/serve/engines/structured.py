"""JSON-schema constrained decoding for the transformers engine, with llguidance.

llguidance computes the set of allowed next tokens from a JSON schema in tens of microseconds per token on
CPU (its own Rust parser over the tokenizer's trie), works with any fast Hugging Face tokenizer and needs
no GPU; replies follow the schema by construction rather than by retry.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import torch


class JsonGrammars:
    """Compiles schemas once per request and hands each generated row its own matcher."""

    def __init__(self, tokenizer, vocab_size: int) -> None:
        self.tokenizer, self.vocab_size = tokenizer, vocab_size

    @functools.cached_property
    def _lltokenizer(self):
        from llguidance.hf import from_tokenizer

        return from_tokenizer(self.tokenizer, n_vocab=self.vocab_size)

    def compile(self, schema: dict[str, Any]) -> str:
        from llguidance import LLMatcher

        try:
            grammar = LLMatcher.grammar_from_json_schema(json.dumps(schema), defaults={"whitespace_flexible": False})
        except ValueError as error:
            raise ValueError(f"the JSON schema cannot be used: {error}") from None
        is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, self._lltokenizer)
        if is_error:
            raise ValueError(f"the JSON schema cannot be used: {messages[0]}")
        return grammar

    def matcher(self, grammar: str) -> RowConstraint:
        from llguidance import LLMatcher

        return RowConstraint(LLMatcher(self._lltokenizer, grammar, log_level=0), self.vocab_size)


class RowConstraint:
    """One row's position in its grammar: masks the logits, then follows the chosen token."""

    def __init__(self, matcher, vocab_size: int) -> None:
        from llguidance.torch import allocate_token_bitmask

        self.matcher = matcher
        self.bitmask = allocate_token_bitmask(1, vocab_size)

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        from llguidance.torch import apply_token_bitmask_inplace, fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self.bitmask)
        masked = scores.detach().to("cpu", copy=True)
        apply_token_bitmask_inplace(masked, self.bitmask)
        return masked.to(scores.device)

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"constrained decoding rejected a token: {self.matcher.get_error()}")

    def finished(self) -> bool:
        """The grammar allows nothing more (the reply is complete JSON)."""
        return self.matcher.is_stopped()
