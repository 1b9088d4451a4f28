"""Poison requests sent while normal ones stream: each fails alone (4xx when the client caused it), and
every normal request completes with 200."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from tests.integration.serve.conftest import API_KEY, running_server

from openrecipe.serve.engines.base import Delta, Failed, Finished, GenerationRequest

HEADERS = {"Authorization": f"Bearer {API_KEY}"}
CHAT = [{"role": "user", "content": "hello"}]

POISON = [
    ("/v1/chat/completions", {"messages": CHAT, "temperature": 1e-40, "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": 1, "top_p": 1e-300, "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": 1, "seed": 18446744073709551616, "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": CHAT, "temperature": 1, "seed": -(2**70), "max_tokens": 4}),
    ("/v1/completions", {"prompt": "", "max_tokens": 4}),
    ("/v1/completions", {"prompt": [], "max_tokens": 4}),
    ("/v1/completions", {"prompt": [10**9], "max_tokens": 4}),
    (
        "/v1/chat/completions",
        {"messages": CHAT, "temperature": 2, "presence_penalty": 2, "frequency_penalty": -2, "max_tokens": 8},
    ),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": ""}], "max_tokens": 4}),
]


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with running_server(model=str(tiny_model_dir), api_key=API_KEY, max_tokens_cap=64, decode_chunk=1) as s:
        yield s


def _stream_normal(base: str, results: list, index: int) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": f"q{index}"}], "max_tokens": 16}
    body.update(temperature=0.7, seed=index, stream=True)
    finish = None
    with httpx.stream("POST", f"{base}/v1/chat/completions", headers=HEADERS, json=body, timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                payload = json.loads(line[6:])
                assert "error" not in payload, payload
                if payload["choices"] and payload["choices"][0]["finish_reason"]:
                    finish = payload["choices"][0]["finish_reason"]
        results.append((response.status_code, finish))


@pytest.mark.parametrize(("path", "poison"), POISON, ids=[json.dumps(p[1])[:60] for p in POISON])
def test_poison_request_fails_alone(server, path, poison):
    base, _ = server
    results: list = []
    threads = [threading.Thread(target=_stream_normal, args=(base, results, i)) for i in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # the normal requests are decoding now
    response = httpx.post(f"{base}{path}", headers=HEADERS, json={"model": "tiny", **poison}, timeout=120)
    for thread in threads:
        thread.join()
    assert response.status_code < 500, response.text
    assert response.status_code == 200 or response.json()["error"]["param"] is not None
    assert len(results) == 3
    assert all(status == 200 and finish in ("length", "stop") for status, finish in results), results


def test_engine_failure_of_one_request_leaves_the_batch_running(server):
    """Below the API's validation: a request that breaks the engine itself (an id past the embedding table)
    fails with an event of its own, and requests prefilled or decoding beside it finish normally."""
    _, engine = server
    events: dict[str, list] = {"bad": [], "good0": [], "good1": []}
    done = {name: threading.Event() for name in events}

    def request(name: str, ids: list[int]) -> GenerationRequest:
        def emit(event):
            events[name].append(event)
            if isinstance(event, Finished | Failed):
                done[name].set()

        return GenerationRequest(prompt_ids=ids, max_tokens=24, emit=emit, temperature=0.0)

    prompt = engine.encode_text("hello there")
    engine.submit(request("good0", prompt))
    engine.submit(request("bad", [*prompt, engine.vocab_size + 10]))
    engine.submit(request("good1", prompt))
    for event in done.values():
        assert event.wait(60)
    assert isinstance(events["bad"][-1], Failed)
    for name in ("good0", "good1"):
        assert isinstance(events[name][-1], Finished) and events[name][-1].reason in ("length", "stop")
        assert all(isinstance(e, Delta) for e in events[name][:-1])


def test_sampling_failure_fails_only_its_row(server, monkeypatch):
    """A row whose sampling raises (whatever the cause) fails alone; its batch neighbours keep decoding."""
    from openrecipe.serve.engines import sampling

    _, engine = server
    original = sampling.RowSampler.pick

    def pick(self, logits):
        if self.request.top_p == 0.123:
            raise RuntimeError("probability tensor contains inf, nan or element < 0")
        return original(self, logits)

    monkeypatch.setattr(sampling.RowSampler, "pick", pick)
    outcomes: dict[int, list] = {0: [], 1: [], 2: []}
    finished = {index: threading.Event() for index in outcomes}

    def emit_to(index):
        def emit(event):
            outcomes[index].append(event)
            if isinstance(event, Finished | Failed):
                finished[index].set()

        return emit

    prompt = engine.encode_text("one two three")
    for index, top_p in enumerate([1.0, 0.123, 1.0]):
        engine.submit(
            GenerationRequest(
                prompt_ids=prompt, max_tokens=12, emit=emit_to(index), temperature=1.0, top_p=top_p, seed=index
            )
        )
    for event in finished.values():
        assert event.wait(60)
    assert isinstance(outcomes[1][-1], Failed)
    assert isinstance(outcomes[0][-1], Finished) and isinstance(outcomes[2][-1], Finished)
