"""One API request's generations: submit them, watch the client, and answer whole or as a stream.

A request becomes one generation per (prompt, n) pair; their events share one queue tagged with the
choice index. A client that goes away cancels every generation of its request, streaming or not.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from openrecipe.serve import tools
from openrecipe.serve.config import ServeSettings
from openrecipe.serve.engines.base import Delta, Engine, Event, Finished, GenerationRequest, TokenLogprob
from openrecipe.serve.errors import ApiError
from openrecipe.serve.protocol import SamplingFields

_CLIENT_GONE = object()


@dataclass
class Prompt:
    ids: list[int]
    echo: str = ""  # text put before the reply (completions with echo)


@dataclass
class _Choice:
    index: int
    prompt: Prompt
    text: str = ""
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finished: Finished | None = None
    streamed: int = 0  # characters of `text` already sent as content (streaming with tools offered)


@dataclass
class ToolCalling:
    offered: list[dict[str, Any]]
    family: str
    parallel: bool

    def split(self, text: str) -> tuple[str | None, list[dict[str, Any]]]:
        names = {tool["function"]["name"] for tool in self.offered}
        content, calls = tools.parse(text, names, self.family)
        return content, calls if self.parallel else calls[:1]

    def streamable(self, text: str) -> int:
        return tools.streamable(text, self.family)


class Generation:
    """The generations of one request and the queue their events arrive on."""

    def __init__(
        self,
        settings: ServeSettings,
        engine: Engine,
        body: SamplingFields,
        prompts: list[Prompt],
        *,
        chat: bool,
        tool_calling: ToolCalling | None = None,
    ):
        self.settings, self.engine, self.body, self.chat = settings, engine, body, chat
        self.tool_calling = tool_calling
        self.loop = asyncio.get_running_loop()
        self.events: asyncio.Queue = asyncio.Queue()
        self.deadline = self.loop.time() + settings.request_timeout_s
        self.created = int(time.time())
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self._refuse_unsupported()
        max_tokens = self._max_tokens(prompts)
        self.grammar = self._grammar()
        outside = [token for token in body.token_bias() if token >= engine.vocab_size]
        if outside:
            raise ApiError(400, f"logit_bias names token {outside[0]}, outside the vocabulary", param="logit_bias")
        self.choices: list[_Choice] = []
        self.requests: list[GenerationRequest] = []
        for prompt in prompts:
            for sample in range(body.n):
                index = len(self.choices)
                self.choices.append(_Choice(index, prompt))
                self.requests.append(self._request(prompt, max_tokens, index, sample))

    def _max_tokens(self, prompts: list[Prompt]) -> int:
        requested = self.body.requested_max_tokens()
        cap = self.settings.max_tokens_cap
        if requested is not None and requested > cap:
            raise ApiError(
                400,
                f"max_tokens is {requested}; this server allows at most {cap}",
                param="max_tokens",
                code="max_tokens_too_large",
            )
        context = self.engine.context_length
        longest = max(len(p.ids) for p in prompts)
        if longest + (requested or 1) > context:
            raise ApiError(
                400,
                f"this model's maximum context length is {context} tokens; the prompt has {longest} and "
                f"{requested or 1} more were requested",
                param="messages" if self.chat else "prompt",
                code="context_length_exceeded",
            )
        return min(requested or min(self.settings.default_max_tokens, cap), context - longest)

    def _refuse_unsupported(self) -> None:
        """A field this engine cannot honour is a 400 naming it, never a silently different reply."""
        for param in getattr(self.engine, "unsupported_params", ()):
            value = getattr(self.body, param, None)
            if param in self.body.model_fields_set and value not in (None, False):
                raise ApiError(
                    400,
                    f"{param} is not supported by this server's engine; the transformers engine supports it",
                    param=param,
                    code="unsupported_parameter",
                )

    def _grammar(self) -> Any:
        response_format = getattr(self.body, "response_format", None)
        schema = response_format.constraint() if response_format is not None else None
        forced = self.body.forced_tool() if self.tool_calling is not None else None  # type: ignore[attr-defined]
        if forced is not None and self.tool_calling is not None:
            schema = tools.call_schema(self.tool_calling.offered, forced or None)
        if schema is None:
            return None
        try:
            return self.engine.compile_json_schema(schema)
        except ValueError as error:
            raise ApiError(400, str(error), param="response_format", code="invalid_schema") from None

    def _request(self, prompt: Prompt, max_tokens: int, index: int, sample: int) -> GenerationRequest:
        body = self.body
        seed = body.request_seed()
        return GenerationRequest(
            prompt_ids=prompt.ids,
            max_tokens=max_tokens,
            emit=self._emitter(index),
            temperature=body.sampling_temperature(),
            top_p=body.top_p,
            seed=None if seed is None else (seed + sample) % 2**64,  # n samples differ, yet each is reproducible
            stops=body.stops(),
            presence_penalty=body.presence_penalty,
            frequency_penalty=body.frequency_penalty,
            logit_bias=body.token_bias(),
            logprobs=body.top_logprobs_count(),
            grammar=self.grammar,
            adapter=None if body.model == self.engine.model_id else body.model,
            prompt_logprobs=bool(getattr(body, "echo", False)) and body.top_logprobs_count() is not None,
        )

    def _emitter(self, index: int) -> Callable[[Event], None]:
        """Called on the engine's thread. A streamed reply wakes the event loop at every delta; a whole reply
        is answered at its end, so its deltas are held and handed over with the last event: one wake-up per
        reply instead of one per token, which at concurrency 8 took CPU from the batch's own matmuls."""
        if self.body.stream:
            return lambda event: self.loop.call_soon_threadsafe(self.events.put_nowait, (index, event))
        held: list[Event] = []  # an engine emits one request's events in order, from one thread

        def emit(event: Event) -> None:
            held.append(event)
            if not isinstance(event, Delta):
                events = held.copy()
                held.clear()
                self.loop.call_soon_threadsafe(self._put_all, index, events)

        return emit

    def _put_all(self, index: int, events: list[Event]) -> None:
        for event in events:
            self.events.put_nowait((index, event))

    def submit(self) -> None:
        for request in self.requests:
            self.engine.submit(request)

    def cancel(self) -> None:
        for request in self.requests:
            request.cancelled.set()

    async def next_event(self) -> tuple[int, Any]:
        remaining = self.deadline - self.loop.time()
        try:
            if remaining <= 0:
                raise TimeoutError
            return await asyncio.wait_for(self.events.get(), timeout=remaining)
        except TimeoutError:
            self.cancel()
            raise ApiError(
                504,
                f"generation took longer than {self.settings.request_timeout_s:g} s",
                type_="timeout_error",
                code="timeout",
            ) from None

    def usage(self) -> dict[str, int]:
        prompt_tokens = sum(len(p.ids) for p in {id(c.prompt): c.prompt for c in self.choices}.values())
        completion = sum(c.finished.completion_tokens for c in self.choices if c.finished)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
        }


async def answer(request: Request, generation: Generation) -> Any:
    """Submit, then reply with one JSON body or an event stream."""
    generation.submit()
    if generation.body.stream:
        return StreamingResponse(
            _stream(request, generation), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )
    watcher = asyncio.ensure_future(_watch_disconnect(request, generation))
    try:
        pending = len(generation.choices)
        while pending:
            index, event = await generation.next_event()
            if index is _CLIENT_GONE:
                raise ApiError(499, "client disconnected", code="client_closed")
            choice = generation.choices[index]
            if isinstance(event, Delta):
                choice.text += event.text
                choice.logprobs += event.logprobs or []
            elif isinstance(event, Finished):
                choice.finished = event
                pending -= 1
            else:
                raise ApiError(500, event.message, type_="server_error", code="generation_failed")
    finally:
        watcher.cancel()
        generation.cancel()  # no-op for finished generations; stops siblings of a failed one
    usage = generation.usage()
    request.state.usage = usage
    return {
        "id": generation.id,
        "object": "chat.completion" if generation.chat else "text_completion",
        "created": generation.created,
        "model": generation.body.model,
        "choices": [_whole_choice(generation, choice) for choice in generation.choices],
        "usage": usage,
    }


async def _watch_disconnect(request: Request, generation: Generation) -> None:
    """The body is already read, so the next ASGI message is the client leaving: cancel its generations."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            generation.cancel()
            generation.events.put_nowait((_CLIENT_GONE, None))
            return


def _whole_choice(generation: Generation, choice: _Choice) -> dict[str, Any]:
    finished = choice.finished
    assert finished is not None
    wants_logprobs = generation.body.top_logprobs_count() is not None
    out: dict[str, Any] = {"index": choice.index, "finish_reason": finished.reason}
    if generation.chat:
        out["message"] = {"role": "assistant", "content": choice.text}
        if generation.tool_calling is not None:
            content, calls = generation.tool_calling.split(choice.text)
            if calls:
                out["message"] = {"role": "assistant", "content": content, "tool_calls": calls}
                out["finish_reason"] = "tool_calls"
        out["logprobs"] = (
            {"content": [_chat_logprob(t) for t in choice.logprobs], "refusal": None} if wants_logprobs else None
        )
    else:
        out["text"] = choice.prompt.echo + choice.text
        scored = (finished.prompt_logprobs or []) + choice.logprobs
        out["logprobs"] = _completion_logprobs(scored) if wants_logprobs else None
    return out


def _chat_logprob(token: TokenLogprob) -> dict[str, Any]:
    return {
        "token": token.token,
        "logprob": token.logprob,
        "bytes": list(token.token.encode()),
        "top_logprobs": [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in token.top],
    }


def _completion_logprobs(tokens: list[TokenLogprob]) -> dict[str, Any]:
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) if t.logprob is not None else None for t in tokens],
        "text_offset": offsets,
    }


def _tool_content(generation: Generation, index: int, text: str) -> dict[str, Any] | None:
    """The content delta a growing reply can send now: what comes before any possible tool call."""
    assert generation.tool_calling is not None
    choice = generation.choices[index]
    choice.text += text
    ready = generation.tool_calling.streamable(choice.text)
    if ready <= choice.streamed:
        return None
    delta, choice.streamed = choice.text[choice.streamed : ready], ready
    return {"content": delta}


def _tool_chunks(generation: Generation, index: int, finished: Finished) -> list[dict[str, Any]]:
    """The deltas that end a choice when tools are offered: the content not streamed yet, then the calls,
    then the reason."""
    assert generation.tool_calling is not None
    choice = generation.choices[index]
    content, calls = generation.tool_calling.split(choice.text)
    sent = choice.text[: choice.streamed]
    if not calls:
        rest = choice.text[choice.streamed :]
    elif content and content.startswith(sent.strip()):
        rest = content[len(sent.strip()) :]
    else:
        rest = ""
    pieces = []
    if rest:
        pieces.append({"delta": {"content": rest}, "reason": None})
    if calls:
        deltas = [{"index": position, **call} for position, call in enumerate(calls)]
        pieces.append({"delta": {"tool_calls": deltas}, "reason": None})
    pieces.append({"delta": {}, "reason": "tool_calls" if calls else finished.reason})
    return pieces


async def _stream(request: Request, generation: Generation) -> AsyncIterator[str]:
    chat = generation.chat

    def chunk(
        index: int | None, delta: dict[str, Any] | None, text: str, reason: str | None, logprobs=None, usage=None
    ) -> str:
        payload: dict[str, Any] = {
            "id": generation.id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": generation.created,
            "model": generation.body.model,
            "choices": [],
        }
        if index is not None:
            choice: dict[str, Any] = {"index": index, "finish_reason": reason, "logprobs": logprobs}
            if chat:
                choice["delta"] = delta or {}
            else:
                choice["text"] = text
            payload["choices"] = [choice]
        if usage is not None:
            payload["usage"] = usage
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    wants_logprobs = generation.body.top_logprobs_count() is not None
    try:
        for choice in generation.choices:
            if chat:
                yield chunk(choice.index, {"role": "assistant", "content": ""}, "", None)
            elif choice.prompt.echo:
                yield chunk(choice.index, None, choice.prompt.echo, None)
        pending = len(generation.choices)
        while pending:
            try:
                index, event = await generation.next_event()
            except ApiError as error:
                yield error.sse()
                return
            if isinstance(event, Delta) and generation.tool_calling is not None:
                # Content streams up to where a tool call could begin; a call is sent once it is whole.
                delta = _tool_content(generation, index, event.text)
                if delta is not None:
                    yield chunk(index, delta, "", None)
            elif isinstance(event, Finished) and generation.tool_calling is not None:
                generation.choices[index].finished = event
                pending -= 1
                for piece in _tool_chunks(generation, index, event):
                    yield chunk(index, piece["delta"], "", piece["reason"])
            elif isinstance(event, Delta):
                logprobs = None
                if wants_logprobs:
                    tokens = event.logprobs or []
                    logprobs = (
                        {"content": [_chat_logprob(t) for t in tokens], "refusal": None}
                        if chat
                        else _completion_logprobs(tokens)
                    )
                yield chunk(index, {"content": event.text}, event.text, None, logprobs)
            elif isinstance(event, Finished):
                generation.choices[index].finished = event
                pending -= 1
                yield chunk(index, {}, "", event.reason)
            else:
                yield ApiError(500, event.message, type_="server_error", code="generation_failed").sse()
                return
        usage = generation.usage()
        request.state.usage = usage
        options = generation.body.stream_options
        if options is not None and options.include_usage:
            yield chunk(None, None, "", None, usage=usage)
        yield "data: [DONE]\n\n"
    finally:
        # Reached on normal end, on error, and when the client goes away mid-stream (the generator is
        # closed): the engine stops working on this request.
        generation.cancel()
