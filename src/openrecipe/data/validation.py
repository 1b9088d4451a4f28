"""Strict-by-default validation: stop at the first bad row, or count every rejection by reason."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from openrecipe.errors import OpenRecipeError

OnError = Literal["strict", "skip"]
ROLES = ("system", "user", "assistant", "tool")


class DataError(OpenRecipeError):
    """A bad row: names FILE:LINE, the field, and the reason."""

    def __init__(self, reason: str, *, where: str, field: str | None = None, fix: str | None = None):
        self.reason = reason
        self.field = field
        what = f"{field}: {reason}" if field else reason
        super().__init__(what, where=where, fix=fix)


MESSAGE_FIELDS = {"role", "content", "name", "weight", "tool_calls", "tool_call_id", "function_call"}


@dataclass
class FieldPolicy:
    """What to do with fields no reader uses: ignore and count them (default), or stop (`unknown_fields: error`)."""

    strict: bool = False
    ignored: Counter = field(default_factory=Counter)

    def unknown(
        self,
        names: set[str],
        *,
        where: str,
        field: str | None = None,
        counted_as: str = "",
        allowed: set[str] | None = None,
    ) -> None:
        if not names:
            return
        if self.strict:
            raise DataError(
                f"extra field {sorted(names)[0]!r}",
                where=where,
                field=field,
                fix=(f"allowed fields: {', '.join(sorted(allowed))}; " if allowed else "")
                + "a column mapping (`columns:`) picks other names; `unknown_fields: ignore` ignores the rest",
            )
        for name in names:
            self.ignored[f"{counted_as}{name}"] += 1


@dataclass
class Rejections:
    """Every rejected row counted by reason, with a few examples of each."""

    on_error: OnError = "strict"
    max_rejected_fraction: float = 0.1
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    rows_seen: int = 0
    fields: FieldPolicy = field(default_factory=FieldPolicy)

    def reject(self, error: DataError) -> None:
        if self.on_error == "strict":
            raise error
        self.counts[error.reason] += 1
        self.examples.setdefault(error.reason, [])
        if len(self.examples[error.reason]) < 3:
            self.examples[error.reason].append(error.format())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def check(self, source: str) -> None:
        """Fail when too much was rejected, even in skip mode."""
        if self.rows_seen and self.total / self.rows_seen > self.max_rejected_fraction:
            reasons = ", ".join(f"{reason} ({count})" for reason, count in self.counts.most_common())
            raise OpenRecipeError(
                f"{self.total} of {self.rows_seen} rows rejected "
                f"(more than max_rejected_fraction={self.max_rejected_fraction}): {reasons}",
                where=source,
                fix="fix the data, or raise max_rejected_fraction if this is expected",
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "rejected": self.total,
            "by_reason": dict(self.counts),
            "examples": self.examples,
            "ignored_fields": dict(sorted(self.fields.ignored.items())),
        }


def _content(value: Any, *, where: str, path: str) -> str:
    """A message's text: a string, null (an assistant turn that only calls tools) or OpenAI's text parts."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        texts = []
        for part in value:
            if part.get("type", "text") != "text" or not isinstance(part.get("text"), str):
                raise DataError(
                    f"content part of type {part.get('type')!r} is not supported",
                    where=where,
                    field=f"{path}.content",
                    fix="only text parts can be trained on",
                )
            texts.append(part["text"])
        return "".join(texts)
    raise DataError(f"must be a string, got {type(value).__name__}", where=where, field=f"{path}.content")


def parse_tool_call(call: Any, *, where: str, path: str) -> dict[str, Any]:
    """One tool call in the shape chat templates expect: arguments as an object, not a JSON string."""
    if not isinstance(call, dict):
        raise DataError(f"must be an object, got {type(call).__name__}", where=where, field=path)
    function = call.get("function", call)  # OpenAI nests {name, arguments} under `function`; ShareGPT does not
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise DataError("a tool call needs a function name", where=where, field=f"{path}.function.name")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as error:
            raise DataError(
                f"arguments are not valid JSON ({error.msg})", where=where, field=f"{path}.function.arguments"
            ) from None
    if not isinstance(arguments, dict):
        raise DataError(
            f"arguments must be a JSON object, got {type(arguments).__name__}",
            where=where,
            field=f"{path}.function.arguments",
        )
    parsed: dict[str, Any] = {"type": "function", "function": {"name": function["name"], "arguments": arguments}}
    if isinstance(call.get("id"), str):
        parsed["id"] = call["id"]
    return parsed


def parse_tools(tools: Any, *, where: str, field_name: str = "tools") -> list[dict[str, Any]] | None:
    """A row's tool list (OpenAI `tools`, legacy `functions`, or LLaMA-Factory's JSON string)."""
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except json.JSONDecodeError as error:
            raise DataError(f"is not valid JSON ({error.msg})", where=where, field=field_name) from None
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise DataError(f"must be a list of tools, got {type(tools).__name__}", where=where, field=field_name)
    out = []
    for index, tool in enumerate(tools):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise DataError("each tool needs a function name", where=where, field=f"{field_name}[{index}]")
        out.append({"type": "function", "function": function})
    return out or None


def _weight(value: Any, role: str, *, where: str, path: str) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise DataError(f"must be 0 or 1, got {value!r}", where=where, field=f"{path}.weight")
    if role != "assistant":
        raise DataError("only assistant messages carry a weight", where=where, field=f"{path}.weight")
    return int(value)


def validate_message(message: Any, *, where: str, path: str, policy: FieldPolicy | None = None) -> dict[str, Any]:
    """One OpenAI-style message into the typed form every later step reads."""
    if not isinstance(message, dict):
        raise DataError(f"must be an object, got {type(message).__name__}", where=where, field=path)
    present = {key for key, value in message.items() if value is not None}  # Arrow/Parquet rows fill gaps with null
    if "role" not in present:
        raise DataError("missing field 'role'", where=where, field=path)
    role = message["role"]
    if role == "function":  # OpenAI's legacy name for a tool result
        role = "tool"
    if role not in ROLES:
        raise DataError(f"unknown role {role!r}", where=where, field=f"{path}.role", fix=f"use {', '.join(ROLES)}")
    calls = message.get("tool_calls") or ([message["function_call"]] if message.get("function_call") else [])
    if "content" not in message and not calls:
        raise DataError("missing field 'content'", where=where, field=path)
    (policy or FieldPolicy(strict=True)).unknown(
        present - MESSAGE_FIELDS, where=where, field=path, counted_as="messages[].", allowed=MESSAGE_FIELDS
    )
    out: dict[str, Any] = {"role": role, "content": _content(message.get("content"), where=where, path=path)}
    if calls:
        if role != "assistant":
            raise DataError("only assistant messages call tools", where=where, field=f"{path}.tool_calls")
        if not isinstance(calls, list):
            raise DataError("must be a list", where=where, field=f"{path}.tool_calls")
        out["tool_calls"] = [
            parse_tool_call(call, where=where, path=f"{path}.tool_calls[{index}]") for index, call in enumerate(calls)
        ]
    if role == "tool":
        for key in ("tool_call_id", "name"):
            if isinstance(message.get(key), str):
                out[key] = message[key]
    if message.get("weight") is not None and _weight(message["weight"], role, where=where, path=path) == 0:
        out["weight"] = 0
    return out


def validate_messages(
    messages: Any, *, where: str, field_name: str = "messages", policy: FieldPolicy | None = None
) -> list[dict[str, Any]]:
    """Roles known, system only first, user/assistant alternating (tool results after tool calls)."""
    if not isinstance(messages, list):
        raise DataError(f"must be a list of messages, got {type(messages).__name__}", where=where, field=field_name)
    if not messages:
        raise DataError("is empty", where=where, field=field_name)
    out = [
        validate_message(message, where=where, path=f"{field_name}[{index}]", policy=policy)
        for index, message in enumerate(messages)
    ]
    check_turn_order(out, where=where, field_name=field_name)
    return out


def _expected_after(previous: dict[str, Any] | None) -> tuple[str, ...]:
    if previous is None or previous["role"] == "system":
        return ("user",)
    if previous["role"] == "user":
        return ("assistant",)
    if previous["role"] == "tool":
        return ("tool", "assistant")
    return ("tool",) if previous.get("tool_calls") else ("user",)


def check_turn_order(messages: list[dict[str, Any]], *, where: str, field_name: str = "messages") -> None:
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns:
        raise DataError("has no user/assistant turns", where=where, field=field_name)
    offset = len(messages) - len(turns)
    previous: dict[str, Any] | None = None
    for index, message in enumerate(turns):
        expected = _expected_after(previous)
        if message["role"] not in expected:
            position = index + offset
            raise DataError(
                f"roles out of order: message {position} is {message['role']!r}, expected "
                + " or ".join(repr(role) for role in expected),
                where=where,
                field=f"{field_name}[{position}].role",
                fix="start with user (after an optional system) and alternate user/assistant; "
                "tool results follow the assistant turn that called the tools",
            )
        previous = message
    if turns[-1]["role"] != "assistant":
        raise DataError(
            f"missing assistant reply (the last message is from the {turns[-1]['role']})",
            where=where,
            field=field_name,
        )
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and not message["content"].strip() and not message.get("tool_calls"):
            raise DataError("empty assistant reply", where=where, field=f"{field_name}[{index}].content")
