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


def _stream(text: str, family: str, step: int = 3) -> tuple[list[str], list[dict]]:
    """Feed `text` in small pieces through the server's streaming path; (content deltas, final deltas)."""
    from types import SimpleNamespace

    from openrecipe.serve.completions import Finished, Prompt, ToolCalling, _Choice, _tool_chunks, _tool_content

    generation = SimpleNamespace(
        tool_calling=ToolCalling([{"function": {"name": n}} for n in NAMES], family, True),
        choices=[_Choice(0, Prompt([]))],
    )
    deltas = []
    for start in range(0, len(text), step):
        delta = _tool_content(generation, 0, text[start : start + step])
        if delta is not None:
            deltas.append(delta["content"])
    return deltas, _tool_chunks(generation, 0, Finished("stop", 0, 0))


def test_content_streams_before_a_call_and_the_call_arrives_whole():
    text = 'Let me check the weather.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>'
    deltas, final = _stream(text, "hermes")
    assert len(deltas) > 3 and "".join(deltas) == "Let me check the weather.\n"  # no marker piece leaks
    assert all("<" not in piece for piece in deltas)
    calls = [d["delta"]["tool_calls"] for d in final if "tool_calls" in d["delta"]]
    assert calls[0][0]["function"]["name"] == "get_weather" and final[-1]["reason"] == "tool_calls"


def test_plain_text_streams_whole_and_a_bare_call_is_held():
    text = "A reply that mentions <tool and braces {like this} but calls nothing."
    deltas, final = _stream(text, "hermes")
    assert "".join(deltas) + "".join(d["delta"].get("content", "") for d in final) == text
    assert final[-1]["reason"] == "stop" and len(deltas) > 3
    deltas, final = _stream('{"name": "add", "arguments": {"a": 1}}', "llama3")
    assert deltas == [] and final[0]["delta"]["tool_calls"][0]["function"]["name"] == "add"
