"""The official openai client against a real server: happy paths and every error class."""

import threading
import time

import httpx
import openai
import pytest

from tests.integration.serve.conftest import API_KEY, running_server

CHAT = [{"role": "user", "content": "hello"}]


def test_models_and_health(server, client):
    base, _ = server
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert httpx.get(f"{base}/health").json()["status"] == "ok"  # no key needed


def test_chat_completion_usage_and_length(client):
    reply = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=5, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("length", "stop")
    assert reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 3
    again = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=5, temperature=0)
    assert again.choices[0].message.content == choice.message.content  # greedy is deterministic


def test_streaming_ends_with_done_and_matches_non_streaming(client):
    full = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=6, temperature=0)
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=CHAT,
            max_tokens=6,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("length", "stop")


def test_completions_and_seeded_sampling(client):
    reply = client.completions.create(model="tiny", prompt="Once upon", max_tokens=4, temperature=0.8, seed=5)
    same = client.completions.create(model="tiny", prompt="Once upon", max_tokens=4, temperature=0.8, seed=5)
    assert reply.choices[0].text == same.choices[0].text
    assert reply.usage.completion_tokens <= 4


def test_stop_sequences(client):
    full = client.completions.create(model="tiny", prompt="a b c", max_tokens=12, temperature=0).choices[0].text
    if len(full) > 3:
        stop = full[2:4]
        cut = client.completions.create(model="tiny", prompt="a b c", max_tokens=12, temperature=0, stop=[stop])
        assert cut.choices[0].text == full[: full.find(stop)]
        assert cut.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("kwargs", "error", "code"),
    [
        ({"model": "other"}, openai.NotFoundError, "model_not_found"),
        ({"max_tokens": 10_000}, openai.BadRequestError, "max_tokens_too_large"),
        (
            {"messages": [{"role": "user", "content": "word " * 600}]},
            openai.BadRequestError,
            "context_length_exceeded",
        ),
        ({"n": 9}, openai.BadRequestError, "invalid_value"),
        ({"extra_body": {"store": True}}, openai.BadRequestError, "unsupported_parameter"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError, "invalid_value"),
        ({"temperature": 7}, openai.BadRequestError, "invalid_value"),
    ],
)
def test_errors_map_to_openai_exceptions(client, kwargs, error, code):
    arguments = {"model": "tiny", "messages": CHAT, "max_tokens": 2, **kwargs}
    with pytest.raises(error) as info:
        client.chat.completions.create(**arguments)
    assert info.value.body["code"] == code
    assert set(info.value.body) == {"message", "type", "param", "code"}


def test_authentication(server):
    from openai import OpenAI

    base, _ = server
    for key in ("wrong-key-000000", ""):
        bad = OpenAI(base_url=f"{base}/v1", api_key=key or "x", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()


def test_body_size_content_type_and_origin(server):
    base, _ = server
    headers = {"Authorization": f"Bearer {API_KEY}"}
    big = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**headers, "Content-Type": "application/json"},
        content=b'{"x": "' + b"a" * 30_000 + b'"}',
    )
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    text = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**headers, "Content-Type": "text/plain"},
        content=b'{"model": "tiny", "messages": []}',
    )
    assert text.status_code == 415  # a cross-site form cannot send JSON without a preflight
    cross = httpx.post(
        f"{base}/v1/chat/completions",
        headers={**headers, "Origin": "https://evil.example"},
        json={"model": "tiny", "messages": CHAT},
    )
    assert cross.status_code == 403 and "access-control-allow-origin" not in cross.headers
    missing = httpx.get(f"{base}/v1/nope", headers=headers)
    assert missing.status_code == 404 and "error" in missing.json()


def test_concurrent_requests_are_batched(server, client):
    _, engine = server
    before = engine.stats()["max_batch_size_seen"]
    results = []

    def ask(i):
        results.append(
            client.chat.completions.create(
                model="tiny", messages=[{"role": "user", "content": f"q{i}"}], max_tokens=16, temperature=0
            )
        )

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert max(before, engine.stats()["max_batch_size_seen"]) > 1


def test_client_disconnect_stops_generation(tiny_model_dir):
    from openai import OpenAI

    with running_server(model=str(tiny_model_dir), max_tokens_cap=4000, decode_chunk=1) as (base, engine):
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=400, stream=True)
        for index, _ in enumerate(stream):
            if index == 3:
                break
        stream.close()
        for _ in range(100):
            if httpx.get(f"{base}/v1/stats").json()["inflight"] == 0:
                break
            time.sleep(0.05)
        produced = engine.stats()["generated_tokens"]
        time.sleep(0.5)
        assert engine.stats()["generated_tokens"] == produced < 400


def test_rate_limit_with_retry_after(tiny_model_dir):
    from openai import OpenAI

    with running_server(model=str(tiny_model_dir), max_concurrent=1, max_tokens_cap=4000, decode_chunk=1) as (
        base,
        _,
    ):
        client = OpenAI(base_url=f"{base}/v1", api_key="x", max_retries=0)
        stream = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=300, stream=True)
        next(iter(stream))
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=2)
        assert info.value.response.headers["retry-after"] == "1"
        # A long request does not stop the server from answering others.
        assert httpx.get(f"{base}/health", timeout=2).status_code == 200
        stream.close()


def test_non_loopback_host_needs_a_key():
    from pydantic import ValidationError

    from openrecipe.serve.config import ServeSettings

    with pytest.raises(ValidationError, match="without an API key"):
        ServeSettings(model="m", host="0.0.0.0")
    assert ServeSettings(model="m", host="0.0.0.0", api_key="long-enough-key").host == "0.0.0.0"
