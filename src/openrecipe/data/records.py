"""The two record shapes every reader produces: chat conversations and plain text documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ROLES = ("system", "user", "assistant")
RecordKind = Literal["chat", "text"]


@dataclass
class Record:
    """One example. `messages` for chat data, `text` for corpora; `where` is FILE:LINE provenance."""

    messages: list[dict[str, str]] | None = None
    text: str | None = None
    where: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> RecordKind:
        return "chat" if self.messages is not None else "text"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": self.messages} if self.messages is not None else {"text": self.text}
        return {**body, **self.extra}

    def content_text(self) -> str:
        """All the words in the record, for dedup, length and PII rules."""
        if self.messages is not None:
            return "\n".join(message["content"] for message in self.messages)
        return self.text or ""
