"""Side-by-side chat: each model is a serving engine (the same ones `openrecipe serve` uses), loaded once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

_engines: dict[str, Any] = {}
_lock = threading.Lock()


def engine_for(model: str):
    """One engine per model reference for the life of the `ui` process."""
    from openrecipe.serve.engines import ENGINES

    with _lock:
        if model not in _engines:
            name = "llamacpp" if model.endswith(".gguf") else "transformers"
            _engines[model] = ENGINES.get(name)(model, model_id=model)
        return _engines[model]


def close_engines() -> None:
    with _lock:
        for engine in _engines.values():
            engine.close()
        _engines.clear()


async def stream_reply(
    model: str, messages: list[dict[str, str]], system: str | None, max_tokens: int = 128
) -> AsyncIterator[dict[str, Any]]:
    """Yield {"delta": text} pieces, then {"done": reason}; errors come as {"error": message}."""
    from openrecipe.serve.engines.base import Delta, Failed, Finished, GenerationRequest

    engine = await asyncio.to_thread(engine_for, model)
    conversation = ([{"role": "system", "content": system}] if system else []) + messages
    loop = asyncio.get_running_loop()
    events: asyncio.Queue = asyncio.Queue()
    request = GenerationRequest(
        prompt_ids=engine.encode_chat(conversation),
        max_tokens=max_tokens,
        emit=lambda event: loop.call_soon_threadsafe(events.put_nowait, event),
    )
    engine.submit(request)
    try:
        while True:
            event = await events.get()
            if isinstance(event, Delta):
                yield {"delta": event.text}
            elif isinstance(event, Finished):
                yield {"done": event.reason}
                return
            elif isinstance(event, Failed):
                yield {"error": event.message}
                return
    finally:
        request.cancelled.set()
