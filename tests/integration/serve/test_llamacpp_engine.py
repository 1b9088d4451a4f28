"""The llama.cpp engine through the official openai client: the same API surface as the transformers engine,
with parallel slots, and the fields it cannot honour refused by name."""

from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.integration.serve.conftest import API_KEY, running_server

# The fuzz suite, run again against this module's llama.cpp server (its `server` fixture below).
from tests.integration.serve.test_fuzz import (  # noqa: F401
    test_malformed_bodies_never_5xx,
    test_still_alive_after_fuzzing,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")


@pytest.fixture(scope="module")
def gguf(tmp_path_factory, tiny_model_dir) -> Path:
    from openrecipe.export.gguf_export import export_gguf

    files = export_gguf(tiny_model_dir, tmp_path_factory.mktemp("gguf"), ["q8_0"], name="tiny")
    return Path(files["q8_0"]["path"])


@pytest.fixture(scope="module")
def server(gguf):
    settings = {"engine": "llamacpp", "slots": 2, "context_length": 256, "api_key": API_KEY, "max_tokens_cap": 32}
    with running_server(model=str(gguf), **settings) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    base, _ = server
    return OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def chat(client, **kwargs):
    return client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Say something."}], max_tokens=8, temperature=0, **kwargs
    )


def test_models_report_the_context_length(client):
    (model,) = client.models.list().data
    assert model.id == "tiny" and model.model_extra["context_length"] == 256


def test_chat_and_stream_agree_when_greedy(client):
    whole = chat(client)
    assert whole.usage.completion_tokens >= 1 and whole.choices[0].finish_reason in ("stop", "length")
    pieces = [c.choices[0].delta.content or "" for c in chat(client, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content


def test_completions_endpoint(client):
    out = client.completions.create(model="tiny", prompt="hello", max_tokens=4, temperature=0)
    assert out.usage.completion_tokens >= 1 and isinstance(out.choices[0].text, str)


def test_concurrent_requests_all_finish_on_two_slots_decoded_in_one_batch(server, client):
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: chat(client), range(8)))
    assert len({r.choices[0].message.content for r in replies}) == 1  # greedy: every slot agrees
    assert server[1].stats()["max_batch_size_seen"] == 2  # both slots' tokens went to one llama_decode


def test_logprobs_are_refused_by_name(client):
    with pytest.raises(openai.BadRequestError) as raised:
        chat(client, logprobs=True)
    assert raised.value.body["param"] == "logprobs"


POISON = [
    ("/v1/chat/completions", {"temperature": 1e-40}),
    ("/v1/chat/completions", {"temperature": 1.0, "top_p": 1e-300}),
    ("/v1/chat/completions", {"seed": 18446744073709551616}),
    ("/v1/completions", {"prompt": ""}),
]


@pytest.mark.parametrize(("path", "fields"), POISON)
def test_poison_requests_fail_alone(server, client, path, fields):
    import httpx

    base, _ = server
    turn = {"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"}
    body = {"model": "tiny", "max_tokens": 3, **turn, **fields}
    response = httpx.post(f"{base}{path}", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert response.status_code in (200, 400), response.text
    assert chat(client).usage.completion_tokens >= 1  # the server still serves everyone else


def test_a_prompt_sharing_a_kept_start_evaluates_only_the_rest_and_replies_the_same(gguf):
    """An idle sequence keeps its keys and values; the next request sharing its start evaluates only the rest,
    and a greedy reply does not change (the first one comes from a fresh server)."""
    from openai import OpenAI

    system = {"role": "system", "content": "You are Nova, the support assistant of Acme Corp. Answer briefly."}
    settings = {"engine": "llamacpp", "slots": 2, "context_length": 256, "api_key": API_KEY, "max_tokens_cap": 32}
    replies = []
    for question in ("What are your opening hours?", "Where is the shop?"):
        with running_server(model=str(gguf), **settings) as (base, engine):
            client = OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=120)

            def ask(text: str, client=client):
                messages = [system, {"role": "user", "content": text}]
                return client.chat.completions.create(model="tiny", messages=messages, max_tokens=8, temperature=0)

            first = ask(question).choices[0].message.content
            assert engine.stats()["reused_prompt_tokens"] == 0
            replies.append((first, ask("Who are you?").choices[0].message.content))
            assert engine.stats()["reused_prompt_tokens"] >= 10  # the system turn, at least
            assert ask(question).choices[0].message.content == first  # the whole prompt kept but its last token
    (_, after_hours), (_, after_shop) = replies
    assert after_hours == after_shop  # what the sequence held before does not leak into the reply


def test_threads_reach_the_context_and_other_engines_refuse_them(gguf):
    from openrecipe.config.loading import validate_config
    from openrecipe.errors import OpenRecipeError
    from openrecipe.serve.config import ServeSettings

    settings = {"engine": "llamacpp", "slots": 2, "context_length": 256, "api_key": API_KEY, "threads": 2}
    with running_server(model=str(gguf), **settings) as (base, engine):
        assert engine._lib.llama_n_threads(engine._context) == 2
        assert engine._lib.llama_n_threads_batch(engine._context) == 2
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        assert chat(client).choices[0].finish_reason in ("stop", "length")
    with pytest.raises(OpenRecipeError, match="--threads applies to the llamacpp engine"):
        validate_config(ServeSettings, {"model": str(gguf), "engine": "transformers", "threads": 2})


def test_default_threads_are_one_per_physical_core(gguf):
    """llama.cpp's own default: on a machine without SMT every core decodes (the old rule, half the logical
    CPUs, left one of two cores idle)."""
    from openrecipe.utils.cpus import physical_cores

    settings = {"engine": "llamacpp", "slots": 1, "context_length": 128, "api_key": API_KEY}
    with running_server(model=str(gguf), **settings) as (_base, engine):
        assert engine._lib.llama_n_threads(engine._context) == physical_cores()
        assert engine._lib.llama_n_threads_batch(engine._context) == physical_cores()


def test_llama_cpp_warnings_stay_quiet(gguf, capfd):
    """8 slots of 4096 cells is one shared cache longer than the tiny model's training context: llama.cpp warns
    about it (each request is held to 4096), and the binding's own callback printed that warning as an error."""
    from openrecipe.serve.engines.llamacpp_engine import LlamaCppEngine

    capfd.readouterr()
    engine = LlamaCppEngine(str(gguf), model_id="tiny", slots=8, context_length=4096)
    engine.close()
    assert "n_ctx_train" not in capfd.readouterr().err
