"""Bodies built to break the server: each gets one 4xx answer, never a 5xx, and nothing is left running."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from tests.integration.serve.conftest import API_KEY, running_server

HEADERS = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with running_server(
        model=str(tiny_model_dir),
        api_key=API_KEY,
        max_tokens_cap=4000,
        max_body_bytes=300_000,
        body_timeout_s=1.5,
        decode_chunk=1,
    ) as s:
        yield s


def _raw_exchange(base: str, head: bytes, parts: list[bytes], *, pause: float = 0.0) -> bytes:
    """Send a hand-made HTTP request and read everything until the server closes or goes quiet."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            try:
                sock.sendall(part)
            except OSError:
                break  # the server answered and closed early, as it should
            time.sleep(pause)
        received = b""
        sock.settimeout(5)
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def test_chunked_body_over_the_limit_gets_one_413(server):
    base, _ = server
    head = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\n\r\n".encode()
    )
    block = b"a" * 50_000
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    reply = _raw_exchange(base, head, [chunk] * 8 + [b"0\r\n\r\n"])
    assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
    assert reply.count(b"HTTP/1.1 ") == 1  # one response, not a 500 followed by a second one
    assert b"request_too_large" in reply


@pytest.mark.parametrize(
    ("path", "raw", "param"),
    [
        ("/v1/chat/completions", b'{"model": "tiny", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None),
        ("/v1/chat/completions", b'{"model": "tiny", "max_tokens": ' + b"9" * 5000 + b', "messages": []}', None),
        ("/v1/chat/completions", b'{"model": "tiny", "max_tokens": ' + b"9" * 4000 + b', "messages": []}', None),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "seed": 1' + b"0" * 30 + b', "messages": [{"role": "user", "content": "x"}]}',
            "seed",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "temperature": 1e400, "messages": [{"role": "user", "content": "x"}]}',
            "temperature",
        ),
        ("/v1/completions", b'{"model": "tiny", "prompt": "\\ud800 lone"}', None),
        ("/v1/chat/completions", b'{"model": "tiny", "messages": [{"role": "user", "content": "\\udfff"}]}', None),
        ("/v1/completions", b'{"model": "tiny", "prompt": ""}', "prompt"),
        ("/v1/completions", b'{"model": "tiny", "prompt": [[]]}', "prompt"),
        ("/v1/completions", b'{"model": "tiny", "prompt": [-1, 5]}', "prompt"),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "audio": {"voice": "x"}}',
            "audio",
        ),
        (
            "/v1/chat/completions",
            b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 3}',
            None,
        ),
    ],
    ids=[
        "deep-nesting",
        "5000-digits",
        "4000-digits",
        "seed-over-64-bits",
        "float-overflow",
        "surrogate-prompt",
        "surrogate-message",
        "empty-prompt",
        "empty-token-prompt",
        "negative-token",
        "unsupported-field",
        "top-logprobs-without-logprobs",
    ],
)
def test_hostile_body_is_a_client_error(server, path, raw, param):
    base, _ = server
    response = httpx.post(f"{base}{path}", headers=HEADERS, content=raw, timeout=60)
    assert 400 <= response.status_code < 500, response.text[:300]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if param is not None:
        assert error["param"] == param


def test_slow_body_times_out_and_counts_against_the_limit(tiny_model_dir):
    with running_server(model=str(tiny_model_dir), max_concurrent=1, body_timeout_s=1.0) as (base, _):
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as slow:
            slow.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b'Content-Length: 500\r\n\r\n{"model": '
            )
            time.sleep(0.3)
            busy = httpx.post(f"{base}/v1/chat/completions", json={"model": "tiny", "messages": []}, timeout=10)
            assert busy.status_code == 429  # the unfinished body holds the only slot
            slow.settimeout(10)
            reply = slow.recv(65536)
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert httpx.get(f"{base}/v1/stats").json()["inflight"] == 0


def test_non_streaming_client_that_leaves_stops_its_generation(server):
    base, engine = server
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 400}).encode()
    host, port = base.removeprefix("http://").split(":")
    before = engine.stats()["generated_tokens"]
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        for _ in range(1200):  # wait until generation is under way
            if engine.stats()["generated_tokens"] > before:
                break
            time.sleep(0.05)
    for _ in range(200):
        if httpx.get(f"{base}/v1/stats", headers=HEADERS).json()["inflight"] == 0:
            break
        time.sleep(0.05)
    produced = engine.stats()["generated_tokens"]
    time.sleep(0.5)
    assert engine.stats()["generated_tokens"] == produced
    assert before < produced < before + 400  # it started, and stopped when the client left


def test_api_key_is_compared_in_constant_time(server, monkeypatch):
    import hmac

    base, _ = server
    calls = []
    original = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or original(a, b))
    for key in (API_KEY[:-1] + "x", "t", API_KEY + "extra"):
        response = httpx.get(f"{base}/v1/models", headers={"Authorization": f"Bearer {key}"})
        assert response.status_code == 401
    assert len(calls) == 3
    assert httpx.get(f"{base}/v1/models", headers=HEADERS).status_code == 200


def test_empty_stop_string_stops_nothing(server):
    base, _ = server
    body = {"model": "tiny", "prompt": "one two", "max_tokens": 6, "temperature": 0}
    plain = httpx.post(f"{base}/v1/completions", headers=HEADERS, json=body, timeout=60).json()
    for stop in ("", [""], ["", "zzzz-not-there"]):
        stopped = httpx.post(f"{base}/v1/completions", headers=HEADERS, json={**body, "stop": stop}, timeout=60)
        assert stopped.status_code == 200
        assert stopped.json()["choices"][0]["text"] == plain["choices"][0]["text"]
