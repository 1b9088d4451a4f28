"""One conformance suite through the official openai client, against every engine on this machine and against
llama.cpp's own `llama-server` when it is built (`make llama-server`).

Where a server behaves differently from ours, DIFFERENCES says how, and the test asserts that behaviour: a
difference that goes away (or changes) fails here, so the table and README's serving section stay true.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import openai
import pytest
from pydantic import BaseModel, ConfigDict

from tests.integration.serve.conftest import API_KEY, llama_server_binary, running_llama_server, running_server

TARGETS = ["transformers", "llamacpp", "llama-server"]
CONTEXT = 256  # tokens per request (per slot on the llama.cpp servers)
CHAT = [{"role": "user", "content": "hello"}]
DIFFERENCES: dict[tuple[str, str], str] = {
    ("llamacpp", "logprobs"): "refused: 400 naming `logprobs` (our llama.cpp engine computes no logprobs)",
    ("llama-server", "unknown_model"): "answered: llama-server serves its one model under any `model` name",
    ("llama-server", "unknown_role"): "answered: any role is handed to the chat template",
    ("llama-server", "max_tokens_too_large"): "answered: a max_tokens past the context ends the reply at the context",
    ("llama-server", "unsupported_field"): "ignored: unknown request fields (here `store`) get a 200",
    ("llama-server", "error_shape"): "error bodies carry `code` as the HTTP status number and no `param`",
    ("llama-server", "n_above_slots"): "refused: n above the server's slot count (`-np`) is a 400",
    ("llama-server", "tool_choice_required"): (
        "not enforced where llama.cpp does not recognise the chat template's tool format (SmolLM2's ChatML here): "
        "the reply is free text with no tool_calls"
    ),
}
REASON = {"llama-server": "llama-server is not built: run `make llama-server`"}


def differs(target: Target, check: str) -> str | None:
    return DIFFERENCES.get((target.name, check))


@dataclass
class Target:
    name: str
    base: str

    def client(self, api_key: str = API_KEY) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.base}/v1", api_key=api_key, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def gguf(tmp_path_factory, tiny_model_dir) -> Path:
    from openrecipe.export.gguf_export import export_gguf

    files = export_gguf(tiny_model_dir, tmp_path_factory.mktemp("conformance-gguf"), ["q8_0"], name="tiny")
    return Path(files["q8_0"]["path"])


@pytest.fixture(scope="module", params=TARGETS)
def target(request, tiny_model_dir) -> Iterator[Target]:
    name = request.param
    limits = {"api_key": API_KEY, "max_tokens_cap": 64}
    if name == "transformers":
        with running_server(model=str(tiny_model_dir), **limits) as (base, _):
            yield Target(name, base)
        return
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is missing: run `make install`")
    gguf = request.getfixturevalue("gguf")
    if name == "llamacpp":
        with running_server(model=str(gguf), engine="llamacpp", slots=2, context_length=CONTEXT, **limits) as (
            base,
            _,
        ):
            yield Target(name, base)
        return
    binary = llama_server_binary()
    if binary is None:
        pytest.skip(REASON[name])
    with running_llama_server(binary, gguf, slots=2, context_length=CONTEXT, api_key=API_KEY) as base:
        yield Target(name, base)


def chat(client: openai.OpenAI, **kwargs):
    arguments = {"model": "tiny", "messages": CHAT, "max_tokens": 5, "temperature": 0, **kwargs}
    return client.chat.completions.create(**arguments)


def test_chat_usage_and_greedy_determinism(target):
    client = target.client()
    reply = chat(client)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("length", "stop")
    assert 1 <= reply.usage.completion_tokens <= 5 and reply.usage.prompt_tokens > 3
    assert chat(client).choices[0].message.content == choice.message.content


def test_streaming_matches_the_whole_reply(target):
    client = target.client()
    whole = chat(client, max_tokens=6)
    chunks = list(chat(client, max_tokens=6, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason][-1] in (
        "length",
        "stop",
    )


def test_completions_max_tokens_and_length(target):
    client = target.client()
    reply = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=3, temperature=0)
    choice = reply.choices[0]
    assert isinstance(choice.text, str) and reply.usage.completion_tokens <= 3
    assert choice.finish_reason == ("length" if reply.usage.completion_tokens == 3 else "stop")


def test_stop_sequences_cut_the_text(target):
    client = target.client()
    full = client.completions.create(model="tiny", prompt="a b c", max_tokens=12, temperature=0).choices[0].text
    if len(full) < 4:
        pytest.skip(f"the tiny model's greedy reply is too short to cut: {full!r}")
    stop = full[2:4]
    cut = client.completions.create(model="tiny", prompt="a b c", max_tokens=12, temperature=0, stop=[stop])
    assert cut.choices[0].text == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seeded_sampling_is_reproducible_and_n_gives_distinct_choices(target):
    client = target.client()
    arguments = {"max_tokens": 6, "temperature": 1.0, "seed": 11}
    assert chat(client, **arguments).choices[0].message.content == chat(client, **arguments).choices[0].message.content
    n = 3
    if differs(target, "n_above_slots"):
        with pytest.raises(openai.BadRequestError):
            chat(client, n=3, **arguments)  # the llama.cpp servers here run 2 slots
        n = 2
    reply = chat(client, n=n, **arguments)
    assert sorted(c.index for c in reply.choices) == list(range(n))
    distinct = len({c.message.content for c in reply.choices})
    assert distinct > 1


def test_logprobs(target):
    client = target.client()
    if differs(target, "logprobs"):
        with pytest.raises(openai.BadRequestError) as info:
            chat(client, logprobs=True, top_logprobs=2)
        assert info.value.body["param"] == "logprobs"
        return
    reply = chat(client, max_tokens=4, logprobs=True, top_logprobs=2)
    content = reply.choices[0].logprobs.content
    assert len(content) == reply.usage.completion_tokens
    for token in content:
        assert token.logprob <= 0 and len(token.top_logprobs) == 2
        assert abs(token.logprob - token.top_logprobs[0].logprob) < 1e-3  # greedy picks the most likely


class Reading(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ok: bool
    level: Literal["low", "high"]


def test_json_schema_reply_validates(target):
    client = target.client()
    schema = {"name": "reading", "schema": Reading.model_json_schema(), "strict": True}
    for seed in range(3):
        reply = chat(
            client,
            max_tokens=48,
            temperature=1.0,
            seed=seed,
            response_format={"type": "json_schema", "json_schema": schema},
        )
        Reading.model_validate_json(reply.choices[0].message.content)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Oslo", "Lima"]}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def test_required_tool_call(target):
    client = target.client()
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    reply = chat(client, messages=ask, tools=[WEATHER], tool_choice="required", max_tokens=48)
    choice = reply.choices[0]
    if differs(target, "tool_choice_required"):
        assert choice.finish_reason != "tool_calls" and not choice.message.tool_calls
        return
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments)["city"] in ("Oslo", "Lima")


def test_authentication(target):
    with pytest.raises(openai.AuthenticationError):
        target.client(api_key="wrong-key-000000").models.list()


def test_models_list_names_the_served_model(target):
    assert "tiny" in [model.id for model in target.client().models.list().data]


ERRORS = [
    ("unknown_model", {"model": "other"}, openai.NotFoundError),
    ("unknown_role", {"messages": [{"role": "wizard", "content": "x"}]}, openai.BadRequestError),
    ("max_tokens_too_large", {"max_tokens": CONTEXT + 1}, openai.BadRequestError),
    ("unsupported_field", {"extra_body": {"store": True}}, openai.BadRequestError),
    ("missing_content", {"messages": [{"role": "user"}]}, openai.BadRequestError),
]


@pytest.mark.parametrize(("check", "fields", "error"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_map_to_openai_exceptions(target, check, fields, error):
    client = target.client()
    difference = differs(target, check)
    if difference and difference.startswith(("answered", "ignored")):
        assert chat(client, **fields).choices[0].finish_reason in ("stop", "length")
        return
    with pytest.raises(error) as info:
        chat(client, **fields)
    body = info.value.body
    if differs(target, "error_shape"):
        assert body["code"] == info.value.status_code and "param" not in body
    else:
        assert set(body) == {"message", "type", "param", "code"}
