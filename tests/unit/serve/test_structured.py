"""The JSON-schema constraint masks exactly the tokens llguidance disallows, and follows the chosen tokens."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openrecipe.serve.engines.structured import JsonGrammars

SCHEMA = {
    "type": "object",
    "properties": {"team": {"enum": ["billing", "support"]}, "count": {"type": "integer"}},
    "required": ["team", "count"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def grammars(tokenizer):
    return JsonGrammars(tokenizer, len(tokenizer))


def reference_mask(constraint, scores: torch.Tensor) -> torch.Tensor:
    """llguidance's own numpy kernel on the same bitmask."""
    from llguidance.numpy import apply_token_bitmask_inplace, fill_next_token_bitmask

    bitmask = np.full_like(constraint.bitmask, -1)
    fill_next_token_bitmask(constraint.matcher, bitmask)
    logits = scores.numpy().copy()[None, :]
    apply_token_bitmask_inplace(logits, bitmask)
    return torch.from_numpy(logits[0])


def test_mask_matches_llguidance_at_every_step_of_a_valid_reply(grammars, tokenizer):
    constraint = grammars.matcher(grammars.compile(SCHEMA))
    reply = tokenizer(json.dumps({"team": "support", "count": 12}, separators=(",", ":")), add_special_tokens=False)
    scores = torch.randn(grammars.vocab_size, generator=torch.Generator().manual_seed(0))
    for token in reply["input_ids"]:
        expected = reference_mask(constraint, scores)
        masked = constraint.mask(scores)
        assert torch.equal(torch.isinf(masked), torch.isinf(expected))
        assert torch.equal(masked[~torch.isinf(masked)], scores[~torch.isinf(expected)])
        assert not torch.isinf(masked[token]), "a token of a valid reply is masked"
        assert 0 < int((~torch.isinf(masked)).sum()) < grammars.vocab_size
        constraint.advance(token)
    assert constraint.finished()


def test_mask_leaves_the_input_untouched_and_refuses_a_disallowed_token(grammars):
    constraint = grammars.matcher(grammars.compile(SCHEMA))
    scores = torch.zeros(grammars.vocab_size)
    masked = constraint.mask(scores)
    assert not torch.isinf(scores).any()
    disallowed = int(torch.isinf(masked).nonzero()[0])
    with pytest.raises(RuntimeError, match="rejected a token"):
        constraint.advance(disallowed)
