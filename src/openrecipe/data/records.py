"""The two record shapes every reader produces: chat conversations and plain text documents.

A chat message is `{"role", "content"}` plus, where present: `tool_calls` (assistant; each
`{"type": "function", "function": {"name", "arguments": {...}}}`), `tool_call_id`/`name` (tool
results) and `weight: 0` (an assistant turn not trained on). `tools` lists the functions on offer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

ROLES = ("system", "user", "assistant", "tool")
RecordKind = Literal["chat", "text"]


@dataclass
class Record:
    """One example. `messages` for chat data, `text` for corpora; `where` is FILE:LINE provenance."""

    messages: list[dict[str, Any]] | None = None
    text: str | None = None
    where: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    tools: list[dict[str, Any]] | None = None

    @property
    def kind(self) -> RecordKind:
        return "chat" if self.messages is not None else "text"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": self.messages} if self.messages is not None else {"text": self.text}
        if self.tools:
            body["tools"] = self.tools
        return {**body, **self.extra}

    def content_text(self) -> str:
        """All the words in the record, for dedup, length and PII rules."""
        if self.messages is not None:
            return "\n".join(_message_text(message) for message in self.messages)
        return self.text or ""


def _message_text(message: dict[str, Any]) -> str:
    calls = message.get("tool_calls")
    if not calls:
        return message["content"]
    return "\n".join([message["content"], *(json.dumps(call["function"], ensure_ascii=False) for call in calls)])
