"""Transformers engine with dynamic batching.

Why a hand-written decode loop instead of `model.generate`: requests arrive at different times and
finish at different times, want different sampling settings and must stop when their client goes away.
The loop below prefills a new batch as soon as requests are waiting, then round-robins decode chunks
between live batches, so a long request never holds up a new one for more than one chunk.

A failure is contained to the smallest unit that caused it: a row whose sampling fails fails alone, a
prefill that fails is retried request by request, and a decode step that fails fails only its batch.
"""

from __future__ import annotations

import collections
import concurrent.futures
import inspect
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from openrecipe.models.generation import cache_keyword, render_chat
from openrecipe.models.templates import ChatTemplate
from openrecipe.serve.engines.adapters import AdapterSet
from openrecipe.serve.engines.base import (
    ENGINES,
    Delta,
    Failed,
    Finished,
    GenerationRequest,
    TokenLogprob,
    apply_stops,
    encode_chat_with_tokenizer,
    held_back,
)
from openrecipe.serve.engines.prefix_cache import PrefixCache, Prompt
from openrecipe.serve.engines.sampling import Detokenizer, RowSampler, prompt_logprobs, token_logprob
from openrecipe.serve.engines.structured import JsonGrammars

log = logging.getLogger("openrecipe.serve")


@dataclass
class _Row:
    request: GenerationRequest
    sampler: RowSampler
    detokenizer: Detokenizer
    generated: list[int] = field(default_factory=list)
    sent: int = 0  # characters already streamed
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)
    scored_prompt: list[TokenLogprob] | None = None
    done: bool = False


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
        adapters: dict[str, str] | None = None,
        chat_template: ChatTemplate | None = None,
    ) -> None:
        from openrecipe.models.loading import load_model

        self.loaded = load_model(
            model,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            merge_adapter=True,
            chat_template=chat_template,
        )
        self.tokenizer = self.loaded.tokenizer
        self.model_id = model_id
        parameters = inspect.signature(self.loaded.model.forward).parameters
        self._adapters = AdapterSet(self.loaded.model, adapters)
        config = self.loaded.model.config
        self.context_length = int(getattr(config, "max_position_embeddings", 2048) or 2048)
        self.vocab_size = int(self.loaded.model.get_output_embeddings().weight.shape[0])
        self._grammars = JsonGrammars(self.tokenizer, self.vocab_size)
        eos = self.loaded.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self.stop_ids = {i for i in [*eos_ids, self.tokenizer.eos_token_id] if i is not None}
        self._cache_arg = cache_keyword(self.loaded.model)
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in parameters else {}
        self.max_batch_size = max_batch_size
        self.decode_chunk = decode_chunk
        self._prefix_cache = PrefixCache()
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._closing = threading.Event()
        self._stats = {
            "batches": 0,
            "max_batch_size_seen": 0,
            "requests": 0,
            "generated_tokens": 0,
            "failed_requests": 0,
        }
        self._thread = threading.Thread(target=self._work, name="openrecipe-engine", daemon=True)
        self._thread.start()

    # -- encoding --------------------------------------------------------------------------------
    def served_models(self) -> list[tuple[str, str | None]]:
        return [(self.model_id, None)] + [(name, self.model_id) for name in self._adapters.names]

    @property
    def chat_template(self) -> str | None:
        template = getattr(self.tokenizer, "chat_template", None)
        return template if isinstance(template, str) else None

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        parse_control_tokens: bool = False,
    ) -> list[int]:
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        prefix = [] if has_template else self.tokenizer("", add_special_tokens=True)["input_ids"]

        def render(items: list[dict[str, Any]]) -> str:
            if tools and has_template:
                return self.tokenizer.apply_chat_template(
                    items, tools=tools, tokenize=False, add_generation_prompt=True
                )
            return render_chat(self.tokenizer, items)

        return prefix + encode_chat_with_tokenizer(
            self.tokenizer, messages, render=render, parse_control_tokens=parse_control_tokens
        )

    def encode_text(self, text: str) -> list[int]:
        """A completions prompt is text: control-token strings in it are not control tokens."""
        return self.tokenizer(text, split_special_tokens=True)["input_ids"]

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def compile_json_schema(self, schema: dict[str, Any]) -> str:
        return self._grammars.compile(schema)

    def submit(self, request: GenerationRequest) -> None:
        self._adapters.track(request)
        self._queue.put(request)

    # -- adapters at run time (applied by the engine thread, between decode steps) -------------------
    def load_adapter(self, name: str, path: str) -> concurrent.futures.Future:
        return self._adapters.load(name, path, taken={self.model_id})

    def unload_adapter(self, name: str) -> None:
        self._adapters.unload(name)

    def stats(self) -> dict[str, Any]:
        return {**self._stats, "prefix_cached_tokens": self._prefix_cache.hit_tokens}

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=10)

    # -- the scheduler ---------------------------------------------------------------------------
    def _work(self) -> None:
        live: collections.deque[_Batch] = collections.deque()
        while not self._closing.is_set():
            if self._adapters.apply_pending():
                self._prefix_cache.clear()  # a name may now mean other weights, so other keys and values
            waiting = self._take_waiting(block=not live)
            for fresh in self._prefill_contained(waiting):
                self._place(live, fresh)
            if live:
                current = live.popleft()
                try:
                    if self._decode(current):
                        live.append(current)
                except Exception as error:  # a broken step fails its own batch, never the server
                    log.exception("decode step failed")
                    self._fail_rows([row for row in current.rows if not row.done], error)

    def _take_waiting(self, *, block: bool) -> list[GenerationRequest]:
        waiting: list[GenerationRequest] = []
        try:
            if block:
                waiting.append(self._queue.get(timeout=0.1))
                time.sleep(0.005)  # let near-simultaneous requests join the same batch
            while len(waiting) < self.max_batch_size:
                waiting.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        fresh = []
        for request in waiting:
            if request.cancelled.is_set():
                request.emit(Finished("cancelled", len(request.prompt_ids), 0))
            else:
                fresh.append(request)
        return fresh

    def _prefill_contained(self, requests: list[GenerationRequest]) -> list[_Batch]:
        """Prefill together; if that fails, one by one, so only the request that breaks it fails."""
        if not requests:
            return []
        scoring = [r for r in requests if r.prompt_logprobs]  # full logits: each scored alone, bounded memory
        groups = self._by_stored_start([r for r in requests if not r.prompt_logprobs]) + [[r] for r in scoring]
        batches = []
        for group in (g for g in groups if g):
            try:
                batches.append(self._prefill(group))
            except Exception as error:
                if len(group) == 1:
                    log.warning("prefill failed for one request: %s", error)
                    self._fail_requests(group, error)
                    continue
                for request in group:
                    try:
                        batches.append(self._prefill([request]))
                    except Exception as single_error:
                        log.warning("prefill failed for one request: %s", single_error)
                        self._fail_requests([request], single_error)
        return batches

    def _by_stored_start(self, requests: list[GenerationRequest]) -> list[list[GenerationRequest]]:
        """Requests with a stored prompt start apart from those without (an adapter's first burst), so the
        latter do not make the former prefill their whole prompts; one group while a common start exists."""
        prompts = [Prompt(r.adapter, tuple(r.prompt_ids)) for r in requests]
        stored = [self._prefix_cache.shared_length([prompt]) for prompt in prompts]
        groups: dict[int, list[GenerationRequest]] = {}  # by the start length each group will reuse
        shared = self._prefix_cache.shared_length([p for p, length in zip(prompts, stored, strict=True) if length])
        for request, length in zip(requests, stored, strict=True):
            groups.setdefault(shared if length and shared else length, []).append(request)
        return list(groups.values())

    def _place(self, live: collections.deque[_Batch], fresh: _Batch) -> None:
        target = next((b for b in live if self._mergeable(b, fresh)), None)
        if target is None:
            live.append(fresh)
            return
        try:
            self._merge_into(target, fresh)  # continuous batching: join the running batch
        except Exception:
            log.exception("could not merge a new batch into a running one; running it on its own")
            live.append(fresh)

    def _fail_requests(self, requests: list[GenerationRequest], error: Exception) -> None:
        self._stats["failed_requests"] += len(requests)
        for request in requests:
            request.emit(Failed(f"generation failed: {type(error).__name__}: {error}"))

    def _fail_rows(self, rows: list[_Row], error: Exception) -> None:
        for row in rows:
            row.done = True
        self._fail_requests([row.request for row in rows], error)

    @torch.inference_mode()
    def _prefill(self, requests: list[GenerationRequest]) -> _Batch:
        from transformers import DynamicCache

        device = self.loaded.device
        assert all(r.prompt_ids for r in requests), "the front end refuses empty prompts"
        score_prompt = any(r.prompt_logprobs for r in requests)  # needs every position's logits: no cache
        prompts = [Prompt(r.adapter, tuple(r.prompt_ids)) for r in requests]
        cached = None if score_prompt else self._prefix_cache.longest(prompts)
        reused = cached[0] if cached else 0
        length = max(len(r.prompt_ids) for r in requests) - reused
        pad = self.tokenizer.pad_token_id or 0
        ids = torch.full((len(requests), length), pad, dtype=torch.long)
        attention = torch.zeros((len(requests), reused + length), dtype=torch.long)
        attention[:, :reused] = 1  # rows: [shared prefix][left padding][own tokens]
        for row, request in enumerate(requests):
            own = request.prompt_ids[reused:]
            ids[row, length - len(own) :] = torch.tensor(own)
            attention[row, reused + length - len(own) :] = 1
        positions = ((attention.cumsum(-1) - 1).clamp(min=0))[:, reused:]
        cache = DynamicCache(cached[1]) if cached else DynamicCache()
        ids, attention, positions = ids.to(device), attention.to(device), positions.to(device)
        logits = self._adapters.forward(
            requests,
            input_ids=ids,
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            **{self._cache_arg: cache},
            **({} if score_prompt else self._keep_last),
        ).logits
        if not score_prompt and self._plain_cache(cache):
            self._prefix_cache.learn(prompts, [(layer.keys, layer.values) for layer in cache.layers], attention)
        rows = []
        for index, request in enumerate(requests):
            constraint = self._grammars.matcher(request.grammar) if request.grammar is not None else None
            row = _Row(request, RowSampler.for_request(request, device, constraint), Detokenizer(self.tokenizer))
            if request.prompt_logprobs:
                row.scored_prompt = prompt_logprobs(
                    self.tokenizer,
                    logits[index, length - len(request.prompt_ids) :],
                    request.prompt_ids,
                    request.logprobs or 0,
                )
            rows.append(row)
        self._stats["batches"] += 1
        self._stats["requests"] += len(requests)
        self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(requests))
        return _Batch(rows, cache, attention, positions[:, -1:], logits[:, -1, :])

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

    @staticmethod
    def _plain_cache(cache: Any) -> bool:
        """Every layer holds all positions' keys and values (no sliding window, no quantization)."""
        return all(
            type(layer).__name__ == "DynamicLayer" and getattr(layer, "keys", None) is not None
            for layer in cache.layers
        )

    def _mergeable(self, live: _Batch, fresh: _Batch) -> bool:
        self._prune(live)
        plain = self._plain_cache(live.cache) and self._plain_cache(fresh.cache)
        return plain and len(live.rows) + len(fresh.rows) <= self.max_batch_size

    def _merge_into(self, live: _Batch, fresh: _Batch) -> None:
        """Left-pad the shorter KV cache and stack the rows: one batch, one forward per token."""
        pad = torch.nn.functional.pad
        length = max(live.attention.shape[1], fresh.attention.shape[1])
        grow_live, grow_fresh = length - live.attention.shape[1], length - fresh.attention.shape[1]
        merged = [  # computed in full before anything is assigned, so a failure leaves `live` intact
            (
                torch.cat([pad(mine.keys, (0, 0, grow_live, 0)), pad(theirs.keys, (0, 0, grow_fresh, 0))]),
                torch.cat([pad(mine.values, (0, 0, grow_live, 0)), pad(theirs.values, (0, 0, grow_fresh, 0))]),
            )
            for mine, theirs in zip(live.cache.layers, fresh.cache.layers, strict=True)
        ]
        for layer, (keys, values) in zip(live.cache.layers, merged, strict=True):
            layer.keys, layer.values = keys, values
        live.attention = torch.cat([pad(live.attention, (grow_live, 0)), pad(fresh.attention, (grow_fresh, 0))])
        live.positions = torch.cat([live.positions, fresh.positions])
        live.next_logits = torch.cat([live.next_logits, fresh.next_logits])
        live.rows += fresh.rows
        self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(live.rows))

    @torch.inference_mode()
    def _decode(self, batch: _Batch) -> bool:
        """Decode up to `decode_chunk` tokens for every row; return whether the batch has live rows."""
        pad = self.tokenizer.pad_token_id or 0
        for _ in range(self.decode_chunk):
            next_ids = []
            for index, row in enumerate(batch.rows):
                if not row.done and row.request.cancelled.is_set():
                    self._finish(row, "cancelled")
                if row.done:
                    next_ids.append(pad)
                    continue
                try:
                    token = self._step_row(row, batch.next_logits[index])
                except Exception as error:  # this row's settings broke sampling: it fails alone
                    log.warning("sampling failed for one request: %s", error)
                    self._fail_rows([row], error)
                    token = pad
                next_ids.append(token)
            if all(row.done for row in batch.rows):
                return False
            next_ids = [token for token, row in zip(next_ids, batch.rows, strict=True) if not row.done]
            self._prune(batch)  # a finished row costs a full row of compute at every later step
            step = torch.tensor(next_ids, device=self.loaded.device).unsqueeze(-1)
            batch.attention = torch.cat([batch.attention, torch.ones_like(step)], dim=-1)
            batch.positions = batch.positions + 1
            batch.next_logits = self._adapters.forward(
                [row.request for row in batch.rows],
                input_ids=step,
                attention_mask=batch.attention,
                position_ids=batch.positions,
                use_cache=True,
                **{self._cache_arg: batch.cache},
            ).logits[:, -1, :]
            if len(batch.rows) < self.max_batch_size and not self._queue.empty():
                return True  # let the waiting requests join now rather than at the end of the chunk
        return True

    def _step_row(self, row: _Row, logits: torch.Tensor) -> int:
        token = row.sampler.pick(logits)
        if row.request.logprobs is not None:
            row.pending_logprobs.append(token_logprob(self.tokenizer, logits, token, row.request.logprobs))
        self._advance(row, token)
        return token

    def _advance(self, row: _Row, token: int) -> None:
        request = row.request
        if token in self.stop_ids:
            self._send(row, apply_stops(row.detokenizer.text, request.stops)[0], final=True)
            self._finish(row, "stop")
            return
        row.generated.append(token)
        row.sampler.record(token)
        self._stats["generated_tokens"] += 1
        text = row.detokenizer.add(token)
        cut, stopped = apply_stops(text, request.stops)
        if stopped or row.sampler.grammar_complete():
            self._send(row, cut, final=True)
            self._finish(row, "stop")
            return
        if (
            len(row.generated) >= request.max_tokens
            or len(request.prompt_ids) + len(row.generated) >= self.context_length
        ):
            self._send(row, text, final=True)
            self._finish(row, "length")
            return
        self._send(row, text[: len(text) - held_back(text, request.stops)])

    def _send(self, row: _Row, text: str, *, final: bool = False) -> None:
        if len(text) > row.sent or (final and row.pending_logprobs):
            row.request.emit(Delta(text[row.sent :], row.pending_logprobs or None))
            row.sent = max(row.sent, len(text))
            row.pending_logprobs = []

    def _finish(self, row: _Row, reason: str) -> None:
        row.done = True
        request = row.request
        request.emit(Finished(reason, len(request.prompt_ids), len(row.generated), row.scored_prompt))


@ENGINES.register("transformers")
def transformers_engine(model: str, **options: Any) -> TransformersEngine:
    return TransformersEngine(model, **options)
