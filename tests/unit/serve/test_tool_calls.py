"""Tool calls parsed from each template family's output form, and tools described to templates without them."""

from __future__ import annotations

import json

from openrecipe.serve import tools

NAMES = {"get_weather", "add"}


def test_hermes_qwen_form_with_two_calls_and_text():
    text = (
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>\n'
        '<tool_call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool_call>'
    )
    content, calls = tools.parse(text, NAMES, "hermes")
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "add"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Oslo"}
    assert all(c["id"].startswith("call_") and c["type"] == "function" for c in calls)


def test_llama3_form_with_python_tag_and_parameters():
    text = '<|python_tag|>{"name": "add", "parameters": {"a": 2, "b": 3}}; {"name": "get_weather", "parameters": {}}'
    content, calls = tools.parse(text, NAMES, "llama3")
    assert content is None
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"a": 2, "b": 3}, {}]


def test_bare_call_object_is_a_call_in_every_family():
    for family in ("hermes", "llama3"):
        _, calls = tools.parse('{"name": "add", "arguments": {"a": 1}}', NAMES, family)
        assert [c["function"]["name"] for c in calls] == ["add"]


def test_unknown_functions_and_plain_text_are_content():
    for text in ('<tool_call>{"name": "rm_rf", "arguments": {}}</tool_call>', "just words", '{"name": "rm_rf"}'):
        assert tools.parse(text, NAMES, "hermes") == (text, [])


def test_family_is_read_from_the_template():
    assert tools.family("{% if tools %}<tool_call>{% endif %}") == "hermes"
    assert tools.family("<|start_header_id|>ipython<|end_header_id|>") == "llama3"


def test_template_without_tools_gets_a_system_note_and_calls_as_text():
    offered = [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "1+1"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"id": "c", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}],
        },
        {"role": "tool", "content": "2", "tool_call_id": "c"},
    ]
    prepared, template_tools = tools.prepare(messages, offered, "{{ messages }}")
    assert template_tools is None
    assert prepared[0]["role"] == "system" and '"name": "add"' in prepared[0]["content"]
    assert prepared[2]["content"] == '<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    same, passed = tools.prepare(messages, offered, "{% for tool in tools %}{% endfor %}")
    assert same is messages and passed == offered


def test_call_schema_pins_the_name_and_the_arguments_schema():
    offered = [
        {
            "type": "function",
            "function": {"name": "add", "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}}},
        },
        {"type": "function", "function": {"name": "get_weather"}},
    ]
    one = tools.call_schema(offered, "add")
    assert one["properties"]["name"] == {"const": "add"} and one["properties"]["arguments"]["properties"]["a"]
    assert len(tools.call_schema(offered, None)["anyOf"]) == 2
