"""Function calling: tools into the prompt through the chat template, tool calls out of the reply.

Two output families are parsed: Hermes/Qwen (`<tool_call>{"name": ..., "arguments": ...}</tool_call>`) and
Llama 3 (`<|python_tag|>{"name": ..., "parameters": ...}`, calls separated by `;`). A reply that is exactly one
JSON call object (what constrained decoding produces for `required` or a named function) is a call in
either family. Only calls that name one of the request's tools are taken as calls.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

_HERMES = re.compile(r"<tool_call>\s*(\{.*?\})\s*(?:</tool_call>|$)", re.DOTALL)


def family(template: str | None) -> str:
    """Which tool-call format the model was trained to write, read from its chat template."""
    text = template or ""
    return "llama3" if "<|python_tag|>" in text or "ipython" in text else "hermes"


def template_renders_tools(template: str | None) -> bool:
    return bool(template) and "tools" in template  # type: ignore[operator]


def prepare(messages: list[dict[str, Any]], tools: list[dict[str, Any]], template: str | None) -> tuple[list, Any]:
    """Messages and the `tools` argument for the template; templates without tool support get a system note."""
    if template_renders_tools(template):
        return messages, tools
    listing = "\n".join(json.dumps(tool, ensure_ascii=False) for tool in tools)
    note = (
        'You may call these functions. To call one, reply with <tool_call>{"name": NAME, "arguments": '
        f"{{...}}}}</tool_call> and nothing else.\n<tools>\n{listing}\n</tools>"
    )
    prepared = [_calls_as_text(message) for message in messages]
    if prepared and prepared[0]["role"] == "system":
        prepared[0] = {**prepared[0], "content": f"{prepared[0]['content']}\n\n{note}"}
    else:
        prepared.insert(0, {"role": "system", "content": note})
    return prepared, None


def _calls_as_text(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls:
        return message
    text = "".join(
        "<tool_call>"
        + json.dumps({"name": call["function"]["name"], "arguments": _arguments(call["function"]["arguments"])})
        + "</tool_call>"
        for call in calls
    )
    rest = {key: value for key, value in message.items() if key != "tool_calls"}
    return {**rest, "content": (message.get("content") or "") + text}


def _arguments(raw: Any) -> Any:
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def parse(text: str, names: set[str], template_family: str) -> tuple[str | None, list[dict[str, Any]]]:
    """(content left over, tool calls in OpenAI's shape) from a finished reply."""
    objects: list[tuple[str, Any]] = []
    content = text
    bare = _json_object(text.strip())
    if bare is not None:
        objects, content = [(text, bare)], ""
    elif template_family == "hermes":
        for match in _HERMES.finditer(text):
            value = _json_object(match.group(1))
            if value is not None:
                objects.append((match.group(0), value))
    else:
        body = text.split("<|python_tag|>", 1)[1] if "<|python_tag|>" in text else text
        for part in body.split(";"):
            value = _json_object(part.strip())
            if value is not None:
                objects.append((part, value))
    calls = []
    for source, value in objects:
        name = value.get("name")
        arguments = value.get("arguments", value.get("parameters", {}))
        if name not in names or not isinstance(arguments, dict | str):
            continue
        calls.append(
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": name,
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False),
                },
            }
        )
        content = content.replace(source, "")
    if not calls:
        return text, []
    content = content.replace("<|python_tag|>", "")
    if template_family == "llama3":
        content = content.replace(";", "")
    content = content.strip()
    return content or None, calls


_MARKERS = {"hermes": ("<tool_call>",), "llama3": ("<|python_tag|>", "{")}


def streamable(text: str, template_family: str) -> int:
    """How much of a reply still being written can be streamed as content: everything before the point
    where a tool call could begin. A reply that opens with `{` may be a bare call and is held whole; a
    trailing partial marker (`<tool_`) is held until the next token shows what it is."""
    body = text.lstrip()
    if not body or body.startswith("{"):
        return 0
    markers = _MARKERS.get(template_family, _MARKERS["hermes"])
    found = [index for index in (text.find(marker) for marker in markers) if index >= 0]
    if found:
        return min(found)
    for marker in markers:
        for size in range(min(len(marker) - 1, len(text)), 0, -1):
            if text.endswith(marker[:size]):
                return len(text) - size
    return len(text)


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "name" in value else None


def call_schema(tools: list[dict[str, Any]], only: str | None) -> dict[str, Any]:
    """The JSON schema of one call to any of `tools` (or to `only`): constrained decoding follows it."""
    options = []
    for tool in tools:
        function = tool["function"]
        if only is not None and function["name"] != only:
            continue
        options.append(
            {
                "type": "object",
                "properties": {
                    "name": {"const": function["name"]},
                    "arguments": function.get("parameters") or {"type": "object"},
                },
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"anyOf": options}
