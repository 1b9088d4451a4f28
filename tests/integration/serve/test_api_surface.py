"""Every field of OpenAI's request bodies is honoured or refused by name; the honoured ones work."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from tests.integration.serve.conftest import API_KEY

CHAT = [{"role": "user", "content": "hello"}]
# A value of the right general shape for each field the server refuses (it must say which field).
PROBES = {
    "audio": {"voice": "alloy", "format": "mp3"},
    "function_call": "auto",
    "functions": [{"name": "f"}],
    "metadata": {"k": "v"},
    "modalities": ["text"],
    "moderation": {},
    "parallel_tool_calls": True,
    "prediction": {"type": "content", "content": "x"},
    "prompt_cache_key": "k",
    "prompt_cache_options": {},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "safety_identifier": "s",
    "service_tier": "auto",
    "store": True,
    "tool_choice": "auto",
    "tools": [{"type": "function", "function": {"name": "f"}}],
    "verbosity": "low",
    "web_search_options": {},
    "suffix": "tail",
}


def _request_fields(module) -> list[str]:
    return sorted(module.CompletionCreateParamsBase.__annotations__)


@pytest.mark.parametrize(
    ("path", "fields", "model", "base_body"),
    [
        (
            "/v1/chat/completions",
            "chat",
            "ChatRequest",
            {"model": "tiny", "messages": CHAT, "max_tokens": 2},
        ),
        ("/v1/completions", "completions", "CompletionRequest", {"model": "tiny", "prompt": "hi", "max_tokens": 2}),
    ],
)
def test_every_openai_field_is_honoured_or_refused_by_name(server, path, fields, model, base_body):
    import openai.types.chat.completion_create_params as chat_params
    import openai.types.completion_create_params as completion_params

    from openrecipe.serve import protocol

    base, _ = server
    names = _request_fields(chat_params if fields == "chat" else completion_params)
    honoured = set(getattr(protocol, model).model_fields)
    refused = [name for name in names if name not in honoured]
    assert set(refused) <= set(PROBES), f"add a probe for {set(refused) - set(PROBES)}"
    for name in refused:
        response = httpx.post(
            f"{base}{path}",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={**base_body, name: PROBES[name]},
            timeout=60,
        )
        assert response.status_code == 400, (name, response.text)
        assert response.json()["error"]["param"] == name
    assert {"logprobs", "n", "presence_penalty", "frequency_penalty", "seed", "logit_bias"} <= honoured


def test_n_choices_are_distinct_and_reproducible(client):
    args = {"model": "tiny", "messages": CHAT, "max_tokens": 6, "temperature": 1.0, "seed": 11, "n": 3}
    first = client.chat.completions.create(**args)
    again = client.chat.completions.create(**args)
    assert [c.index for c in first.choices] == [0, 1, 2]
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices]
    assert len(set(texts)) > 1
    assert first.usage.completion_tokens <= 3 * 6


def test_streamed_n_choices_each_finish(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=CHAT, max_tokens=4, temperature=1.0, seed=3, n=2, stream=True
        )
    )
    finished = {
        c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    }
    assert set(finished) == {0, 1}


def test_chat_logprobs_match_the_greedy_choice(client):
    reply = client.chat.completions.create(
        model="tiny", messages=CHAT, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
    )
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for token in content:
        assert token.logprob <= 0 and len(token.top_logprobs) == 3
        assert math.isclose(token.logprob, token.top_logprobs[0].logprob, abs_tol=1e-4)  # greedy = most likely


def test_completion_echo_scores_the_prompt(client):
    reply = client.completions.create(
        model="tiny", prompt="one two three", max_tokens=1, temperature=0, echo=True, logprobs=1
    )
    choice = reply.choices[0]
    assert choice.text.startswith("one two three")
    logprobs = choice.logprobs
    assert logprobs.token_logprobs[0] is None and all(lp <= 0 for lp in logprobs.token_logprobs[1:])
    assert len(logprobs.tokens) == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert logprobs.text_offset[0] == 0 and logprobs.text_offset == sorted(logprobs.text_offset)


def test_penalties_change_a_greedy_reply_and_logit_bias_forces_a_token(client, server):
    _, engine = server
    plain = client.completions.create(model="tiny", prompt="a a a a", max_tokens=12, temperature=0)
    penalised = client.completions.create(
        model="tiny", prompt="a a a a", max_tokens=12, temperature=0, frequency_penalty=2.0, presence_penalty=2.0
    )
    assert plain.choices[0].text != penalised.choices[0].text
    forced_id = engine.encode_text(" banana")[-1]
    forced = client.completions.create(
        model="tiny", prompt="a", max_tokens=3, temperature=0, logit_bias={str(forced_id): 100}
    )
    assert forced.choices[0].text == engine.decode_text([forced_id] * 3)


def test_content_parts_tool_turns_and_max_completion_tokens(client):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "what is the "}, {"type": "text", "text": "weather?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_completion_tokens=3)
    assert reply.usage.completion_tokens <= 3
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=[{"role": "tool", "content": "x"}], max_tokens=2)
    assert "tool_call_id" in info.value.body["message"]


def test_models_report_context_length_and_metrics_are_prometheus(server, client):
    base, engine = server
    models = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}).json()["data"]
    assert models[0]["context_length"] == engine.context_length
    client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
    assert httpx.get(f"{base}/metrics").status_code == 401  # behind the key like the API
    text = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert 'openrecipe_requests_total{endpoint="chat",status="200"}' in text
    assert "openrecipe_generated_tokens_total" in text and "openrecipe_requests_in_flight" in text
