"""Tools through the server: offered in the prompt, calls returned as tool_calls, forced calls always valid."""

from __future__ import annotations

import json

import openai
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"enum": ["Oslo", "Lima"]}, "days": {"type": "integer", "minimum": 1, "maximum": 7}},
            "required": ["city", "days"],
            "additionalProperties": False,
        },
    },
}
ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 99}},
            "required": ["a"],
            "additionalProperties": False,
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather in Oslo?"}]


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_forced_calls_always_parse_and_match_the_schema(client, choice):
    for seed in range(3):
        reply = client.chat.completions.create(
            model="tiny",
            messages=ASK,
            tools=[WEATHER, ADD],
            tool_choice=choice,
            max_tokens=48,
            temperature=1.0,
            seed=seed,
        )
        choice_out = reply.choices[0]
        assert choice_out.finish_reason == "tool_calls"
        call = choice_out.message.tool_calls[0]
        arguments = json.loads(call.function.arguments)
        if call.function.name == "get_weather":
            assert arguments["city"] in ("Oslo", "Lima") and 1 <= arguments["days"] <= 7
        else:
            assert call.function.name == "add" and 0 <= arguments["a"] <= 99
        if isinstance(choice, dict):
            assert call.function.name == "add"


def test_forced_call_streams_as_a_tool_calls_delta(client):
    chunks = list(
        client.chat.completions.create(
            model="tiny", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=48, stream=True
        )
    )
    calls = [tc for c in chunks if c.choices and c.choices[0].delta.tool_calls for tc in c.choices[0].delta.tool_calls]
    assert calls[0].function.name == "get_weather" and json.loads(calls[0].function.arguments)["city"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


def test_tool_result_turn_and_none_choice_give_text(client):
    messages = [
        *ASK,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]
    reply = client.chat.completions.create(
        model="tiny", messages=messages, tools=[WEATHER], tool_choice="none", max_tokens=4
    )
    assert reply.choices[0].message.tool_calls is None and isinstance(reply.choices[0].message.content, str)


def test_tool_choice_naming_an_unknown_function_is_refused(client):
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="tiny", messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "nope"}}
        )
