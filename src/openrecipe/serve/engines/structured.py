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
    """One row's position in its grammar: masks the logits, then follows the chosen token.

    The bitmask is filled through `llguidance.numpy` and applied with plain tensor ops: `llguidance.torch`
    wraps its apply step in `torch.compile`, whose import and first compile stall the engine thread for
    seconds on CPU.
    """

    _BITS = torch.arange(32, dtype=torch.int32)

    def __init__(self, matcher, vocab_size: int) -> None:
        from llguidance.numpy import allocate_token_bitmask

        self.matcher = matcher
        self.vocab_size = vocab_size
        self.bitmask = allocate_token_bitmask(1, vocab_size)

    def allowed(self) -> torch.Tensor:
        """Which tokens the grammar allows next, as a bool vector over the vocabulary."""
        from llguidance.numpy import fill_next_token_bitmask

        fill_next_token_bitmask(self.matcher, self.bitmask)
        words = torch.from_numpy(self.bitmask[0])
        return ((words.unsqueeze(-1) >> self._BITS) & 1).flatten()[: self.vocab_size].bool()

    def mask(self, scores: torch.Tensor) -> torch.Tensor:
        allowed = self.allowed().to(scores.device)
        return scores.masked_fill(~allowed[: scores.shape[-1]], float("-inf"))

    def advance(self, token: int) -> None:
        if not self.matcher.consume_token(token):
            raise RuntimeError(f"constrained decoding rejected a token: {self.matcher.get_error()}")

    def finished(self) -> bool:
        """The grammar allows nothing more (the reply is complete JSON)."""
        return self.matcher.is_stopped()
