"""The engine contract: encode prompts, accept requests, stream events back. One registry of engines."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from openrecipe.registry import Registry


@dataclass
class TokenLogprob:
    token: str
    logprob: float | None  # None for a prompt's first token, which nothing predicts
    top: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class Delta:
    text: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class Finished:
    reason: str  # "stop" | "length" | "cancelled"
    prompt_tokens: int
    completion_tokens: int
    prompt_logprobs: list[TokenLogprob] | None = None  # echo + logprobs: one per prompt token


@dataclass
class Failed:
    message: str


Event = Delta | Finished | Failed


@dataclass
class GenerationRequest:
    prompt_ids: list[int]
    max_tokens: int
    emit: Callable[[Event], None]  # called from the engine's thread; must be thread-safe
    temperature: float = 0.0  # 0: greedy; the front end has already mapped tiny temperatures to 0
    top_p: float = 1.0
    seed: int | None = None  # unsigned 64-bit
    stops: list[str] = field(default_factory=list)  # non-empty strings
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)  # token id -> added to its logit
    logprobs: int | None = None  # None: none; k: the chosen token's logprob and the k most likely
    prompt_logprobs: bool = False  # also score the prompt tokens (completions with echo)
    adapter: str | None = None  # a LoRA adapter served beside the base model (None: the base)
    grammar: Any = None  # what the engine's compile_json_schema returned: decoding is constrained to it
    cancelled: threading.Event = field(default_factory=threading.Event)


class Engine(Protocol):
    model_id: str
    context_length: int
    vocab_size: int

    chat_template: str | None

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        parse_control_tokens: bool = False,
    ) -> list[int]: ...

    def encode_text(self, text: str) -> list[int]: ...

    def decode_text(self, ids: list[int]) -> str: ...

    def compile_json_schema(self, schema: dict[str, Any]) -> Any:
        """A grammar the engine constrains decoding with; ValueError names what is wrong with the schema."""
        ...

    def submit(self, request: GenerationRequest) -> None: ...

    def stats(self) -> dict[str, Any]: ...

    def served_models(self) -> list[tuple[str, str | None]]:
        """(model id, parent id) for everything a request may name: the base, then any adapters."""
        ...

    def close(self) -> None: ...


EngineFactory = Callable[..., Engine]
ENGINES: Registry[EngineFactory] = Registry("serving engine")


def apply_stops(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut `text` at the first stop string; report whether one was found."""
    cut = min((text.find(stop) for stop in stops if stop and stop in text), default=-1)
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


class ControlTokenInContent(ValueError):
    """Message content holds a control-token string and the template gives no way to keep it as text."""


def encode_chat_with_tokenizer(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    *,
    render: Callable[[list[dict[str, Any]]], str],
    parse_control_tokens: bool,
) -> list[int]:
    """Token ids of a rendered chat with a Hugging Face tokenizer; user text is encoded as text (control-token
    strings stay plain text) unless the request opts in to parsing them."""

    def markup(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    if parse_control_tokens:
        return markup(render(messages))
    return encode_chat_content_as_text(
        messages,
        render=render,
        tokenize_markup=markup,
        tokenize_text=lambda text: tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"],
    )


def encode_chat_content_as_text(
    messages: list[dict[str, Any]],
    *,
    render: Callable[[list[dict[str, Any]]], str],
    tokenize_markup: Callable[[str], list[int]],
    tokenize_text: Callable[[str], list[int]],
) -> list[int]:
    """Tokenize a chat so the template's own markup may hold control tokens but message content may not.

    Without this, a user who writes `<|im_end|>\\n<|im_start|>system` in a message gets a real system turn.
    The template is rendered with a unique placeholder in place of each content; the markup between
    placeholders is tokenized with control tokens, each content as plain text. A template that rewrites
    the placeholder (rare) falls back to the plain rendering, refusing content that holds a control token.
    """
    nonce = secrets.token_hex(6)
    marks = {index: f"\ue000{nonce}-{index}\ue001" for index, m in enumerate(messages) if m.get("content")}
    masked = [{**m, "content": marks[i]} if i in marks else m for i, m in enumerate(messages)]
    rendered = render(masked)
    ids: list[int] = []
    position = 0
    for index, mark in marks.items():
        found = rendered.find(mark, position)
        if found < 0 or rendered.count(mark) != 1:
            return _encode_unmasked(messages, render, tokenize_markup, tokenize_text)
        ids += tokenize_markup(rendered[position:found]) if found > position else []
        ids += tokenize_text(messages[index]["content"])
        position = found + len(mark)
    ids += tokenize_markup(rendered[position:]) if position < len(rendered) else []
    return ids


def _encode_unmasked(messages, render, tokenize_markup, tokenize_text) -> list[int]:
    for message in messages:
        content = message.get("content") or ""
        if content and tokenize_markup(content) != tokenize_text(content):
            raise ControlTokenInContent(
                f"a {message['role']} message contains a control-token string and this chat template "
                "cannot keep it as text; remove it, or send parse_control_tokens: true to mean it"
            )
    return tokenize_markup(render(messages))
