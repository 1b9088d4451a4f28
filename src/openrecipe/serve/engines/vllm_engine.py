"""vLLM engine (GPU, optional extra) on vLLM's async engine, behind our front end.

Each request is its own `AsyncLLM.generate` stream on one event loop running in a background thread; vLLM
batches every running request continuously and streams token deltas (`RequestOutputKind.DELTA`), already
detokenized and with stop strings held back. Cancelling the stream aborts the request inside vLLM.

Prompts are tokenized here with the model's Hugging Face tokenizer (the same files vLLM loads), so chat
rendering, tools and control-token handling match the other engines; vLLM receives token ids.

Written against vLLM 0.11-0.33 (`vllm/v1/engine/async_llm.py`: `AsyncLLM.from_engine_args`, `generate(prompt,
sampling_params, request_id, lora_request=...)`, `abort`, `add_lora`/`remove_lora`, `model_config`;
`vllm/sampling_params.py`: `SamplingParams`, `StructuredOutputsParams`, `RequestOutputKind`; `vllm/logprobs.py`:
`Logprob(logprob, rank, decoded_token)`). Older releases named structured output `guided_decoding`
(`GuidedDecodingParams`); they are not supported.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines.base import (
    ENGINES,
    Delta,
    Failed,
    Finished,
    GenerationRequest,
    TokenLogprob,
    encode_chat_with_tokenizer,
)

# vLLM's LoRA slots take one of these ranks (vllm/config/lora.py `MaxLoRARanks`).
LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)
MIN_LORA_SLOTS = 4  # adapters one batch may mix (vLLM `max_loras`), at least
CANCEL_POLL_S = 0.05  # how often cancelled requests are looked for (the front end sets an Event)


@dataclass(frozen=True)
class JsonSchemaConstraint:
    """What compile_json_schema hands back: a schema vLLM's structured-output backend decodes under."""

    schema_json: str


# -- pure mappings: our settings and requests to vLLM's arguments, vLLM's outputs to our events ------------


def engine_arguments(
    model_path: str,
    *,
    dtype: str = "auto",
    trust_remote_code: bool = False,
    context_length: int | None = None,
    max_batch_size: int | None = None,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    lora_ranks: Sequence[int] = (),
    max_loras: int = 0,
) -> dict[str, Any]:
    """Keyword arguments for vLLM's `AsyncEngineArgs` from the serve settings."""
    from openrecipe.models.device import DTYPES

    if dtype != "auto" and dtype not in DTYPES:
        raise OpenRecipeError(f"unknown dtype {dtype!r}", where="--dtype", fix=f"use one of: auto, {', '.join(DTYPES)}")
    arguments: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": dtype,
        "trust_remote_code": trust_remote_code,
        "tensor_parallel_size": tensor_parallel_size,
        "gpu_memory_utilization": gpu_memory_utilization,
        "disable_log_stats": True,
    }
    if context_length is not None:
        arguments["max_model_len"] = context_length
    if max_batch_size is not None:
        arguments["max_num_seqs"] = max_batch_size
    if max_loras:
        # room for adapters loaded at run time to share a batch with the ones served from the start
        arguments.update(
            enable_lora=True, max_loras=max(max_loras, MIN_LORA_SLOTS), max_lora_rank=lora_slot_rank(lora_ranks)
        )
    return arguments


def lora_slot_rank(ranks: Sequence[int]) -> int:
    """The smallest LoRA rank vLLM accepts that holds every adapter's rank."""
    needed = max(ranks, default=8)
    for rank in LORA_RANKS:
        if rank >= needed:
            return rank
    raise OpenRecipeError(
        f"an adapter has LoRA rank {needed}; vLLM serves ranks up to {LORA_RANKS[-1]}",
        where="--adapter",
        fix="serve it with the transformers engine, or merge it into the base and serve the merged model",
    )


def adapter_rank(path: str) -> int:
    """The `r` of a PEFT adapter folder."""
    config = Path(path) / "adapter_config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise OpenRecipeError(
            f"cannot read the LoRA rank from {config}: {error}", where="--adapter", fix="pass a PEFT adapter folder"
        ) from None


def sampling_arguments(request: GenerationRequest) -> dict[str, Any]:
    """Keyword arguments for vLLM's `SamplingParams` (without `structured_outputs`/`output_kind`)."""
    return {
        "n": 1,  # the front end submits n > 1 as n requests, each with its own seed
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,  # 0 is greedy in vLLM too
        "top_p": request.top_p,
        # vLLM seeds a torch.Generator, which takes signed 64-bit values; the reduction keeps requests reproducible
        "seed": None if request.seed is None else request.seed % 2**63,
        "stop": list(request.stops) or None,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logit_bias": dict(request.logit_bias) or None,
        "logprobs": request.logprobs,
        # vLLM scores the prompt with this many alternatives; our front end wants the same k as for the reply
        "prompt_logprobs": (request.logprobs or 0) if request.prompt_logprobs else None,
        "skip_special_tokens": True,
    }


def structured_outputs(grammar: JsonSchemaConstraint | None, params_class):
    """vLLM's `StructuredOutputsParams` for a request's schema: compact JSON, as the transformers engine decodes
    (with free whitespace a weak model can spend its whole budget on spaces and never close the object)."""
    if grammar is None:
        return None
    return params_class(json=grammar.schema_json, disable_any_whitespace=True)


def finish_reason(vllm_reason: str | None) -> str:
    """vLLM's `CompletionOutput.finish_reason` ("stop", "length", "abort") as ours."""
    return {"length": "length", "abort": "cancelled"}.get(vllm_reason or "stop", "stop")


def token_logprobs(
    token_ids: Sequence[int], entries: Sequence[Mapping[int, Any] | None], top: int, decode
) -> list[TokenLogprob]:
    """vLLM's per-token `{token id: Logprob(logprob, rank, decoded_token)}` maps as our TokenLogprobs.

    Each map holds the chosen token and up to `top` alternatives, ranked from 1; the chosen token is there even
    when it is outside the top ones. A missing map (a prompt's first token) scores None. Token text comes from
    our tokenizer's `decode([id])`, as in the other engines, not from vLLM's `decoded_token`.
    """
    scored = []
    for token, entry in zip(token_ids, entries, strict=True):
        if entry is None:
            scored.append(TokenLogprob(decode(token), None))
            continue
        ranked = sorted(
            ((alt, info) for alt, info in entry.items() if info.rank is not None and info.rank <= top),
            key=lambda item: item[1].rank,
        )
        alternatives = [(decode(alt), float(info.logprob)) for alt, info in ranked]
        scored.append(TokenLogprob(decode(token), float(entry[token].logprob), alternatives))
    return scored


class StreamState:
    """Turns one request's stream of vLLM `CompletionOutput` deltas into our events."""

    def __init__(self, request: GenerationRequest, decode) -> None:
        self.request, self.decode = request, decode
        self.produced = 0
        self.prompt_scores: list[TokenLogprob] | None = None

    def prompt(self, prompt_logprobs: Sequence[Mapping[int, Any] | None] | None) -> None:
        """Keep the prompt's scores (vLLM sends them once, with the first output)."""
        if prompt_logprobs and self.prompt_scores is None and self.request.prompt_logprobs:
            self.prompt_scores = token_logprobs(
                self.request.prompt_ids, prompt_logprobs, self.request.logprobs or 0, self.decode
            )

    def events(self, completion: Any) -> list[Delta | Finished]:
        """Events for one delta output (`text`, `token_ids`, `logprobs` new since the last; `finish_reason`)."""
        self.produced += len(completion.token_ids)
        scores = None
        if self.request.logprobs is not None and completion.logprobs:
            scores = token_logprobs(completion.token_ids, completion.logprobs, self.request.logprobs, self.decode)
        out: list[Delta | Finished] = []
        if completion.text or scores:
            out.append(Delta(completion.text, scores))
        if completion.finish_reason is not None:
            out.append(
                Finished(
                    finish_reason(completion.finish_reason),
                    len(self.request.prompt_ids),
                    self.produced,
                    self.prompt_scores,
                )
            )
        return out

    def cancelled(self) -> Finished:
        return Finished("cancelled", len(self.request.prompt_ids), self.produced, self.prompt_scores)


# -- the engine -----------------------------------------------------------------------------------------


class VllmEngine:
    unsupported_params: tuple[str, ...] = ()  # every sampling field maps onto vLLM's SamplingParams

    def __init__(
        self,
        model: str,
        *,
        model_id: str,
        chat_template: Any = None,
        adapters: dict[str, str] | None = None,
        context_length: int | None = None,
        dtype: str = "auto",
        trust_remote_code: bool = False,
        max_batch_size: int | None = None,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        device: str = "auto",
        **_: Any,
    ) -> None:
        from transformers import AutoTokenizer

        if device not in ("auto", "cuda"):
            raise OpenRecipeError(f"the vllm engine runs on the GPU, not {device!r}", where="--device", fix="drop it")
        source = _model_source(model)
        self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        if chat_template is not None:
            from openrecipe.models.templates import use_chat_template

            use_chat_template(self.tokenizer, chat_template, model_name=model)
        self.model_id = model_id
        self.vocab_size = len(self.tokenizer)
        adapters = dict(adapters or {})
        self._lora_ids: dict[str, Any] = {}  # served name -> LoRARequest
        self._retiring: dict[str, Any] = {}  # unloaded names whose running requests still finish
        self._users: dict[str, int] = {}
        self._next_lora_id = 1
        self._lora_enabled = bool(adapters)
        ranks = [adapter_rank(path) for path in adapters.values()]
        self._lora_rank = lora_slot_rank(ranks)
        arguments = engine_arguments(
            source,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            context_length=context_length,
            max_batch_size=max_batch_size,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            lora_ranks=ranks,
            max_loras=len(adapters),
        )
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="openrecipe-vllm", daemon=True)
        self._thread.start()
        self._live: dict[str, tuple[GenerationRequest, asyncio.Task]] = {}
        self._stats = {"requests": 0, "generated_tokens": 0, "failed_requests": 0, "max_batch_size_seen": 0}
        self._decoding: set[str] = set()  # requests vLLM has begun answering and not finished: its running batch
        try:
            self.engine = self._call(self._start(arguments))
        except BaseException:
            self._stop_loop()
            raise
        # AsyncLLM.model_config (v1); max_model_len is what vLLM settled on (the flag, or the model's own limit)
        self.context_length = int(self.engine.model_config.max_model_len)
        self._reaper = asyncio.run_coroutine_threadsafe(self._reap_cancelled(), self._loop)
        for name, path in adapters.items():
            self._register_adapter(name, path)

    async def _start(self, arguments: dict[str, Any]):
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        return AsyncLLM.from_engine_args(AsyncEngineArgs(**arguments))

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    # -- prompts ---------------------------------------------------------------------------------------
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
        def render(items: list[dict[str, Any]]) -> str:
            return self.tokenizer.apply_chat_template(items, tools=tools, add_generation_prompt=True, tokenize=False)

        return encode_chat_with_tokenizer(
            self.tokenizer, messages, render=render, parse_control_tokens=parse_control_tokens
        )

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, split_special_tokens=True)["input_ids"]

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def _decode_one(self, token: int) -> str:
        return self.tokenizer.decode([token])

    @functools.cached_property
    def _grammars(self):
        from openrecipe.serve.engines.structured import JsonGrammars

        return JsonGrammars(self.tokenizer, self.vocab_size)

    def compile_json_schema(self, schema: dict[str, Any]) -> JsonSchemaConstraint:
        """Checked with llguidance (one of vLLM's structured-output backends, and the one vLLM falls back to for
        schemas xgrammar cannot take) so an unusable schema is a 400 naming response_format, not a failed
        request."""
        self._grammars.compile(schema)
        return JsonSchemaConstraint(json.dumps(schema))

    # -- requests --------------------------------------------------------------------------------------
    def submit(self, request: GenerationRequest) -> None:
        self._loop.call_soon_threadsafe(self._begin, request)

    def _begin(self, request: GenerationRequest) -> None:
        """On the loop, in submission order: an adapter counts this request before any later unload looks."""
        if request.adapter is not None:
            self._users[request.adapter] = self._users.get(request.adapter, 0) + 1
        request_id = uuid.uuid4().hex
        task = self._loop.create_task(self._generate(request, request_id))
        self._live[request_id] = (request, task)

    async def _generate(self, request: GenerationRequest, request_id: str) -> None:
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind, SamplingParams, StructuredOutputsParams

        state = StreamState(request, self._decode_one)
        self._stats["requests"] += 1
        try:
            lora = self._lora_request(request.adapter)
            params = SamplingParams(
                **sampling_arguments(request),
                output_kind=RequestOutputKind.DELTA,
                structured_outputs=structured_outputs(request.grammar, StructuredOutputsParams),
            )
            prompt = TokensPrompt(prompt_token_ids=list(request.prompt_ids))
            async for output in self.engine.generate(prompt, params, request_id, lora_request=lora):
                self._decoding.add(request_id)
                self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(self._decoding))
                state.prompt(output.prompt_logprobs)
                completion = output.outputs[0]
                self._stats["generated_tokens"] += len(completion.token_ids)
                for event in state.events(completion):
                    request.emit(event)
                if output.finished:
                    return
            request.emit(state.cancelled())  # the stream ended without a finish: vLLM aborted it
        except asyncio.CancelledError:  # our reaper cancelled it; generate() has aborted it inside vLLM
            request.emit(state.cancelled())
        except Exception as error:  # this request fails alone
            self._stats["failed_requests"] += 1
            request.emit(Failed(f"vLLM failed: {type(error).__name__}: {error}"))
        finally:
            self._live.pop(request_id, None)
            self._decoding.discard(request_id)
            await self._release(request.adapter)

    async def _reap_cancelled(self) -> None:
        """Cancel the streams of requests the front end gave up on (client gone, timeout)."""
        while True:
            for request, task in list(self._live.values()):
                if request.cancelled.is_set() and not task.done():
                    task.cancel()
            await asyncio.sleep(CANCEL_POLL_S)

    # -- adapters --------------------------------------------------------------------------------------
    def _register_adapter(self, name: str, path: str) -> None:
        """Load a startup adapter now, so a folder vLLM cannot use stops the server before it listens."""
        from vllm.lora.request import LoRARequest

        lora = LoRARequest(lora_name=name, lora_int_id=self._next_lora_id, lora_path=str(path))
        self._next_lora_id += 1
        try:
            self._call(self.engine.add_lora(lora))
        except Exception as error:  # vLLM raises several types for a folder it cannot use
            self.close()
            raise OpenRecipeError(
                f"vLLM cannot load adapter {name!r} from {path}: {error}",
                where="--adapter",
                fix="pass a PEFT LoRA folder whose target modules vLLM supports for this model",
            ) from None
        self._lora_ids[name] = lora

    def _lora_request(self, adapter: str | None):
        if adapter is None:
            return None
        lora = self._lora_ids.get(adapter) or self._retiring.get(adapter)
        if lora is None:
            raise KeyError(f"no adapter named {adapter!r} is served")
        return lora

    def load_adapter(self, name: str, path: str) -> concurrent.futures.Future:
        if name == self.model_id or name in self._lora_ids or name in self._retiring:
            raise ValueError(f"model name {name!r} is already served")
        if not self._lora_enabled:
            raise ValueError("this server was started without adapters; start it with --adapter to add more")

        async def load() -> None:
            from vllm.lora.request import LoRARequest

            try:
                rank = adapter_rank(path)
            except OpenRecipeError as error:
                raise ValueError(error.what) from None
            if rank > self._lora_rank:
                raise ValueError(
                    f"the adapter has LoRA rank {rank}; this server's LoRA slots hold rank {self._lora_rank} "
                    "(the largest rank among the --adapter folders it was started with)"
                )
            lora = LoRARequest(lora_name=name, lora_int_id=self._next_lora_id, lora_path=str(path))
            self._next_lora_id += 1
            try:
                loaded = await self.engine.add_lora(lora)
            except Exception as error:  # vLLM raises several types for a folder it cannot use
                raise ValueError(f"vLLM cannot load the adapter: {error}") from None
            if not loaded:
                raise ValueError(f"vLLM did not load the adapter at {path}")
            self._lora_ids[name] = lora

        return asyncio.run_coroutine_threadsafe(load(), self._loop)

    def unload_adapter(self, name: str) -> None:
        """New requests for `name` are refused at once; vLLM drops it when its running requests end."""
        if name not in self._lora_ids:
            raise KeyError(name)
        self._retiring[name] = self._lora_ids.pop(name)
        asyncio.run_coroutine_threadsafe(self._release(name, ending=False), self._loop)

    async def _release(self, adapter: str | None, *, ending: bool = True) -> None:
        if adapter is None:
            return
        if ending:
            self._users[adapter] = self._users.get(adapter, 1) - 1
        if adapter in self._retiring and self._users.get(adapter, 0) <= 0:
            lora = self._retiring.pop(adapter)
            await self.engine.remove_lora(lora.lora_int_id)

    def served_models(self) -> list[tuple[str, str | None]]:
        return [(self.model_id, None)] + [(name, self.model_id) for name in self._lora_ids]

    def stats(self) -> dict[str, Any]:
        return {**self._stats, "running": len(self._live)}

    def close(self) -> None:
        self._reaper.cancel()
        self._call(self._shutdown())
        self._stop_loop()

    async def _shutdown(self) -> None:
        for _, task in list(self._live.values()):
            task.cancel()
        self.engine.shutdown()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


def _model_source(model: str) -> str:
    """The folder (or hub id) vLLM loads; an adapter reference is refused with the ways to serve it."""
    from openrecipe.models.loading import model_source_path
    from openrecipe.models.refs import resolve_model_ref

    ref = resolve_model_ref(model)
    if ref.kind == "gguf":
        raise OpenRecipeError(
            "the vllm engine serves Hugging Face folders, not .gguf files", fix="serve it with --engine llamacpp"
        )
    if ref.kind == "adapter":
        raise OpenRecipeError(
            f"{model} is a LoRA adapter; the vllm engine serves a base model with adapters beside it",
            fix="serve its base with --adapter NAME=PATH, or merge it first (`openrecipe merge`)",
        )
    path = model_source_path(ref)
    return str(path) if path is not None else ref.name


@ENGINES.register("vllm")
def vllm_engine(model: str, **options: Any) -> VllmEngine:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise OpenRecipeError("the vllm engine needs vLLM and a GPU", fix="pip install 'openrecipe[vllm]'") from None
    return VllmEngine(model, **options)
