"""The engine contract: encode prompts, accept requests, stream events back. One registry of engines."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openrecipe.registry import Registry


@dataclass
class Delta:
    text: str


@dataclass
class Finished:
    reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Failed:
    message: str


Event = Delta | Finished | Failed


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[Event], None]  # called from the engine's thread; must be thread-safe
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stops: list[str] = field(default_factory=list)
    cancelled: threading.Event = field(default_factory=threading.Event)


class Engine(Protocol):
    model_id: str
    context_length: int

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def submit(self, request: GenerationRequest) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


EngineFactory = Callable[..., Engine]
ENGINES: Registry[EngineFactory] = Registry("serving engine")


def apply_stops(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; report whether one was found."""
    cut = min((text.find(stop) for stop in stops if stop in text), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def held_back(text: str, stops: list[str]) -> int:
    """Characters at the end that might be the start of a stop string: not streamed yet."""
    keep = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                keep = max(keep, size)
                break
    return keep
