"""A reply cut by max_tokens (or streamed token by token) never splits a UTF-8 character."""

from __future__ import annotations

import itertools
import json

import httpx
import pytest

from openrecipe.serve.engines.sampling import Detokenizer, RowSampler

TEXT = "你好，世界。今天天气很好"


def test_detokenizer_never_shows_half_a_character(tokenizer):
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    detokenizer = Detokenizer(tokenizer)
    seen = [detokenizer.add(token) for token in ids]
    assert all("\ufffd" not in text for text in seen)
    assert seen[-1] == TEXT
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))


@pytest.mark.parametrize("stream", [False, True])
def test_reply_cut_mid_character_has_no_replacement_character(tiny_model_dir, tokenizer, monkeypatch, stream):
    """The model is scripted to say TEXT; every cut point of max_tokens gives whole characters only."""
    from tests.integration.serve.conftest import running_server

    script = tokenizer(TEXT, add_special_tokens=False)["input_ids"]

    def scripted(self, logits):
        index = getattr(self, "script_position", 0)
        self.script_position = index + 1
        return script[index % len(script)]

    monkeypatch.setattr(RowSampler, "pick", scripted)
    with running_server(model=str(tiny_model_dir), max_tokens_cap=64) as (base, _):
        replies = []
        for cut in range(1, len(script) + 1):
            body = {"model": "tiny", "prompt": "x", "max_tokens": cut, "stream": stream}
            response = httpx.post(f"{base}/v1/completions", json=body, timeout=60)
            if stream:
                pieces = [
                    json.loads(line[6:])["choices"] for line in response.text.splitlines() if line.startswith("data: {")
                ]
                replies.append("".join(c[0]["text"] for c in pieces if c))
            else:
                replies.append(response.json()["choices"][0]["text"])
    assert all("\ufffd" not in reply for reply in replies), replies
    assert replies[-1] == TEXT
    assert all(TEXT.startswith(reply) for reply in replies)
