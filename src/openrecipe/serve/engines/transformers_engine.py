"""Transformers engine with dynamic batching.

Why a hand-written decode loop instead of `model.generate`: requests arrive at different times and
finish at different times, want different sampling settings and must stop when their client goes away.
The loop below prefills a new batch as soon as requests are waiting, then round-robins decode chunks
between live batches, so a long request never holds up a new one for more than one chunk.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from openrecipe.models.generation import render_chat
from openrecipe.serve.engines.base import (
    ENGINES,
    Delta,
    Failed,
    Finished,
    GenerationRequest,
    apply_stops,
    held_back,
)


@dataclass
class _Row:
    request: GenerationRequest
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters already streamed
    done: bool = False
    generator: torch.Generator | None = None


@dataclass
class _Batch:
    rows: list[_Row]
    cache: Any
    attention: torch.Tensor
    positions: torch.Tensor
    next_logits: torch.Tensor


class TransformersEngine:
    def __init__(
        self,
        model: str,
        *,
        model_id: str,
        max_batch_size: int = 8,
        decode_chunk: int = 8,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        from openrecipe.models.loading import load_model

        self.loaded = load_model(
            model, device=device, dtype=dtype, trust_remote_code=trust_remote_code, merge_adapter=True
        )
        self.tokenizer = self.loaded.tokenizer
        self.model_id = model_id
        config = self.loaded.model.config
        self.context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        eos = self.loaded.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos_ids, self.tokenizer.eos_token_id] if i is not None}
        import inspect

        parameters = inspect.signature(self.loaded.model.forward).parameters
        # transformers 5 renamed `past_key_values` to `cache`; support both.
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.max_batch_size = max_batch_size
        self.decode_chunk = decode_chunk
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._closing = threading.Event()
        self._stats = {"batches": 0, "max_batch_size_seen": 0, "requests": 0, "generated_tokens": 0}
        self._thread = threading.Thread(target=self._work, name="openrecipe-engine", daemon=True)
        self._thread.start()

    # -- encoding --------------------------------------------------------------------------------
    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        text = render_chat(self.tokenizer, messages)
        return self.tokenizer(text, add_special_tokens=not getattr(self.tokenizer, "chat_template", None))["input_ids"]

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def submit(self, request: GenerationRequest) -> None:
        self._queue.put(request)

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=10)

    # -- the scheduler ---------------------------------------------------------------------------
    def _work(self) -> None:
        live: collections.deque[_Batch] = collections.deque()
        while not self._closing.is_set():
            waiting: list[GenerationRequest] = []
            try:
                if not live:
                    waiting.append(self._queue.get(timeout=0.1))
                    time.sleep(0.005)  # let near-simultaneous requests join the same batch
                while len(waiting) < self.max_batch_size:
                    waiting.append(self._queue.get_nowait())
            except queue.Empty:
                pass
            waiting = [r for r in waiting if not r.cancelled.is_set() or self._finish_cancelled(r)]
            current: _Batch | None = None
            try:
                if waiting:
                    fresh = self._prefill(waiting)
                    target = next((b for b in live if self._mergeable(b, fresh)), None)
                    if target is not None:
                        self._merge_into(target, fresh)  # continuous batching: join the running batch
                    else:
                        live.append(fresh)
                if live:
                    current = live.popleft()
                    if self._decode(current):
                        live.append(current)
            except Exception as error:  # a broken batch fails its own requests, never the server
                batches = [*live, *([current] if current is not None else [])]
                pending = {id(r.request): r.request for b in batches for r in b.rows if not r.done}
                pending.update({id(r): r for r in waiting})
                for request in pending.values():
                    request.emit(Failed(f"generation failed: {type(error).__name__}: {error}"))
                live.clear()

    def _finish_cancelled(self, request: GenerationRequest) -> bool:
        request.emit(Finished("cancelled", len(request.prompt_ids), 0))
        return False

    @torch.inference_mode()
    def _prefill(self, requests: list[GenerationRequest]) -> _Batch:
        from transformers import DynamicCache

        device = self.loaded.device
        length = max(len(r.prompt_ids) for r in requests)
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(requests), length), pad, dtype=torch.long)
        attention = torch.zeros((len(requests), length), dtype=torch.long)
        for row, request in enumerate(requests):
            ids[row, length - len(request.prompt_ids) :] = torch.tensor(request.prompt_ids)
            attention[row, length - len(request.prompt_ids) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache()
        ids, attention, positions = ids.to(device), attention.to(device), positions.to(device)
        logits = self.loaded.model(
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: cache},
            **self._keep_last,
        ).logits[:, -1, :]
        rows = []
        for request in requests:
            generator = None
            if request.temperature > 0:
                generator = torch.Generator(device=device)
                generator.manual_seed(request.seed if request.seed is not None else torch.seed())
            rows.append(_Row(request, generator=generator))
        self._stats["batches"] += 1
        self._stats["requests"] += len(requests)
        self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(requests))
        return _Batch(rows, cache, attention, positions[:, -1:], logits)

    def _prune(self, batch: _Batch) -> None:
        """Drop finished rows so their slots can be reused."""
        alive = [index for index, row in enumerate(batch.rows) if not row.done]
        if len(alive) == len(batch.rows) or not alive:
            return
        index = torch.tensor(alive, device=batch.attention.device)
        batch.cache.batch_select_indices(index)
        batch.rows = [batch.rows[i] for i in alive]
        batch.attention, batch.positions = batch.attention[index], batch.positions[index]
        batch.next_logits = batch.next_logits[index]

    def _mergeable(self, live: _Batch, fresh: _Batch) -> bool:
        self._prune(live)
        plain = all(
            type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
            for cache in (live.cache, fresh.cache)
            for layer in cache.layers
        )
        return plain and len(live.rows) + len(fresh.rows) <= self.max_batch_size

    def _merge_into(self, live: _Batch, fresh: _Batch) -> None:
        """Left-pad the shorter KV cache and stack the rows: one batch, one forward per token."""
        pad = torch.nn.functional.pad
        length = max(live.attention.shape[1], fresh.attention.shape[1])
        grow_live, grow_fresh = length - live.attention.shape[1], length - fresh.attention.shape[1]
        for mine, theirs in zip(live.cache.layers, fresh.cache.layers, strict=True):
            mine.keys = torch.cat([pad(mine.keys, (0, 0, grow_live, 0)), pad(theirs.keys, (0, 0, grow_fresh, 0))])
            mine.values = torch.cat([pad(mine.values, (0, 0, grow_live, 0)), pad(theirs.values, (0, 0, grow_fresh, 0))])
        live.attention = torch.cat([pad(live.attention, (grow_live, 0)), pad(fresh.attention, (grow_fresh, 0))])
        live.positions = torch.cat([live.positions, fresh.positions])
        live.next_logits = torch.cat([live.next_logits, fresh.next_logits])
        live.rows += fresh.rows
        self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(live.rows))

    def _pick(self, row: _Row, logits: torch.Tensor) -> int:
        request = row.request
        if request.temperature <= 0:
            return int(logits.argmax())
        probs = torch.softmax(logits.float() / request.temperature, dim=-1)
        if request.top_p < 1.0:
            sorted_probs, order = probs.sort(descending=True)
            keep = sorted_probs.cumsum(-1) - sorted_probs < request.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_probs[keep])
        return int(torch.multinomial(probs, 1, generator=row.generator))

    @torch.inference_mode()
    def _decode(self, batch: _Batch) -> bool:
        """Decode up to `decode_chunk` tokens for every row; return whether the batch has live rows."""
        for _ in range(self.decode_chunk):
            next_ids = []
            for index, row in enumerate(batch.rows):
                if row.done:
                    next_ids.append(self.tokenizer.pad_token_id or 0)
                    continue
                if row.request.cancelled.is_set():
                    self._finish(row, "cancelled")
                    next_ids.append(self.tokenizer.pad_token_id or 0)
                    continue
                token = self._pick(row, batch.next_logits[index])
                next_ids.append(token)
                self._advance(row, token)
            if all(row.done for row in batch.rows):
                return False
            device = self.loaded.device
            step = torch.tensor(next_ids, device=device).unsqueeze(-1)
            batch.attention = torch.cat([batch.attention, torch.ones_like(step)], dim=-1)
            batch.positions = batch.positions + 1
            batch.next_logits = self.loaded.model(
                input_ids=step,
                attention_mask=batch.attention,
                position_ids=batch.positions,
                use_cache=True,
                **{self._cache_arg: batch.cache},
            ).logits[:, -1, :]
        return True

    def _advance(self, row: _Row, token: int) -> None:
        request = row.request
        if token in self.stop_ids:
            self._flush(row, final=True)
            self._finish(row, "stop")
            return
        row.generated.append(token)
        self._stats["generated_tokens"] += 1
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        cut, stopped = apply_stops(text, request.stops)
        if stopped:
            self._send(row, cut)
            self._finish(row, "stop")
            return
        if (
            len(row.generated) >= request.max_tokens
            or len(request.prompt_ids) + len(row.generated) >= self.context_length
        ):
            self._send(row, text)
            self._finish(row, "length")
            return
        if not text.endswith("\ufffd"):  # wait for the rest of a multi-byte character
            self._send(row, text[: len(text) - held_back(text, request.stops)])

    def _flush(self, row: _Row, final: bool) -> None:
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        self._send(row, apply_stops(text, row.request.stops)[0])

    def _send(self, row: _Row, text: str) -> None:
        if len(text) > row.sent:
            row.request.emit(Delta(text[row.sent :]))
            row.sent = len(text)

    def _finish(self, row: _Row, reason: str) -> None:
        row.done = True
        row.request.emit(Finished(reason, len(row.request.prompt_ids), len(row.generated)))


@ENGINES.register("transformers")
def transformers_engine(model: str, **options: Any) -> TransformersEngine:
    return TransformersEngine(model, **options)
