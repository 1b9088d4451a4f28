"""Strict-by-default validation: stop at the first bad row, or count every rejection by reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from openrecipe.errors import OpenRecipeError

OnError = Literal["strict", "skip"]


class DataError(OpenRecipeError):
    """A bad row: names FILE:LINE, the field, and the reason."""

    def __init__(self, reason: str, *, where: str, field: str | None = None, fix: str | None = None):
        self.reason = reason
        self.field = field
        what = f"{field}: {reason}" if field else reason
        super().__init__(what, where=where, fix=fix)


@dataclass
class Rejections:
    """Every rejected row counted by reason, with a few examples of each."""

    on_error: OnError = "strict"
    max_rejected_fraction: float = 0.1
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    rows_seen: int = 0

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
        return {"rejected": self.total, "by_reason": dict(self.counts), "examples": self.examples}


def validate_messages(messages: Any, *, where: str, field_name: str = "messages") -> list[dict[str, str]]:
    """Roles known, system only first, user/assistant alternating, last reply non-empty."""
    if not isinstance(messages, list):
        raise DataError(f"must be a list of messages, got {type(messages).__name__}", where=where, field=field_name)
    if not messages:
        raise DataError("is empty", where=where, field=field_name)
    out: list[dict[str, str]] = []
    for index, message in enumerate(messages):
        path = f"{field_name}[{index}]"
        if not isinstance(message, dict):
            raise DataError(f"must be an object, got {type(message).__name__}", where=where, field=path)
        missing = {"role", "content"} - message.keys()
        if missing:
            raise DataError(f"missing field {sorted(missing)[0]!r}", where=where, field=path)
        extra = set(message) - {"role", "content", "name", "weight"}
        if extra:
            raise DataError(
                f"extra field {sorted(extra)[0]!r}",
                where=where,
                field=path,
                fix="messages hold role and content only",
            )
        role, content = message["role"], message["content"]
        if role not in ("system", "user", "assistant"):
            raise DataError(
                f"unknown role {role!r}",
                where=where,
                field=f"{path}.role",
                fix="use system, user or assistant",
            )
        if not isinstance(content, str):
            raise DataError(f"must be a string, got {type(content).__name__}", where=where, field=f"{path}.content")
        out.append({"role": role, "content": content})
    check_turn_order(out, where=where, field_name=field_name)
    return out


def check_turn_order(messages: list[dict[str, str]], *, where: str, field_name: str = "messages") -> None:
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns:
        raise DataError("has no user/assistant turns", where=where, field=field_name)
    for index, message in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if message["role"] != expected:
            position = index + (len(messages) - len(turns))
            raise DataError(
                f"roles out of order: message {position} is {message['role']!r}, expected {expected!r}",
                where=where,
                field=f"{field_name}[{position}].role",
                fix="start with user (after an optional system) and alternate user/assistant",
            )
    if turns[-1]["role"] != "assistant":
        raise DataError("missing assistant reply (the last message is from the user)", where=where, field=field_name)
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and not message["content"].strip():
            raise DataError("empty assistant reply", where=where, field=f"{field_name}[{index}].content")
