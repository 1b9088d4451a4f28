"""The llama.cpp engine for GGUF files: parallel slots decoded together, one token each, in one llama.cpp batch.

The GGUF header is bounds-checked before llama.cpp opens the file, so a truncated or hostile file is a
user error, not a crash. One llama.cpp context holds one KV cache the slots share (each request stays
within the context length; an idle sequence keeps its tokens, and the next request sharing their start
evaluates only the rest). One thread builds a batch from every running request (a token each, plus the
next chunk of any new prompt), decodes it in one `llama_decode` call on the engine's threads, and samples each
request with its own sampler chain. Decoding several requests in one batch costs little more than
decoding one, which one context per slot (each decoding alone on the shared cores) could not give.
"""

from __future__ import annotations

import codecs
import ctypes
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.models.templates import ChatTemplate
from openrecipe.serve.engines.base import (
    ENGINES,
    Delta,
    Failed,
    Finished,
    GenerationRequest,
    apply_stops,
    encode_chat_content_as_text,
    held_back,
)
from openrecipe.utils.cpus import physical_cores

_BATCH_TOKENS = 512  # tokens per llama_decode call: running requests first, then chunks of new prompts


@dataclass(frozen=True)
class JsonGrammar:
    """A GBNF grammar from llama.cpp's JSON-schema converter: what `compile_json_schema` hands back."""

    source: str
    root: str = "root"


@dataclass
class _Slot:
    """A running request: its sequence in the KV cache, sampler chain and what it has produced so far."""

    request: GenerationRequest
    seq_id: int
    sampler: Any
    pending: list[int]  # prompt tokens not decoded yet
    fed: list[int] = field(default_factory=list)  # the tokens whose keys and values this sequence holds
    produced: int = 0
    next_token: int | None = None  # sampled, to be decoded in the next batch
    text: str = ""
    sent: int = 0
    decoder: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))

    @property
    def position(self) -> int:
        """The next position in this slot's sequence: one after the last token it holds."""
        return len(self.fed)


class LlamaCppEngine:
    # llama.cpp computes logprobs only for contexts that keep every position's logits (slower, bigger).
    unsupported_params = ("logprobs", "top_logprobs")

    def __init__(
        self,
        model: str,
        *,
        model_id: str,
        context_length: int = 4096,
        slots: int = 1,
        threads: int | None = None,
        chat_template: ChatTemplate | None = None,
        **options: Any,
    ) -> None:
        from openrecipe.models.gguf_header import check_gguf
        from openrecipe.models.llamacpp import load_llama_cpp

        if not model.endswith(".gguf"):
            raise OpenRecipeError("the llamacpp engine serves .gguf files", fix="export one with `openrecipe export`")
        check_gguf(Path(model))
        self._lib = load_llama_cpp()
        # Weights, vocabulary and metadata; its own small context is never decoded on.
        self.llama = self._lib.Llama(model_path=model, n_ctx=64, n_batch=64, verbose=False)
        self._vocab = self.llama._model.vocab
        self._template = self.llama.metadata.get("tokenizer.chat_template")
        if chat_template is not None:
            self._template = self._checked(chat_template, model)
        self.model_id = model_id
        self.num_slots = max(1, slots)
        self.context_length = context_length
        self.vocab_size = self.llama.n_vocab()
        # llama.cpp's own default (llama-server's): a thread per physical core. Measured on 2 idle AVX2 cores
        # without SMT (bench/serve.py, 32 requests of up to 48 tokens, 8 slots, q8_0): 1 thread 50.8 / 88.8 tok/s
        # at concurrency 1 / 8, 2 threads 77.6 / 162.5. Every batch waits on all its threads at each layer, so a
        # busy machine is better served by fewer (`--threads`).
        self._context = self._new_context(threads or physical_cores())
        self._memory = self._lib.llama_get_memory(self._context)
        self._batch = self._lib.llama_batch_init(_BATCH_TOKENS, 0, 1)
        # What each idle sequence still holds: a new request takes the one sharing the longest start with its
        # prompt and evaluates only the rest, as llama-server's slots do (the chat template's system turn).
        self._kept: dict[int, list[int]] = {}
        self._queue: queue.Queue[GenerationRequest | None] = queue.Queue()
        self._stats = {
            "requests": 0,
            "generated_tokens": 0,
            "failed_requests": 0,
            "slots": self.num_slots,
            "max_batch_size_seen": 0,
            "reused_prompt_tokens": 0,
        }
        self._thread = threading.Thread(target=self._serve, name="openrecipe-llamacpp", daemon=True)
        self._thread.start()

    def _new_context(self, threads: int) -> Any:
        """One context, one KV cache of `context_length` cells per slot that the slots share (each request is
        held to `context_length` by `_take`), the engine's threads on every batch. Shared, not a stream per slot:
        measured idle through HTTP (bench/serve.py --slots 8, 16 requests of 32 tokens, q8_0 default model, AVX2),
        concurrency 8 went from 45.4 to 68.1 tokens/s, concurrency 1 unchanged (41.8 / 42.9)."""
        params = self._lib.llama_context_default_params()
        params.n_ctx = self.context_length * self.num_slots
        params.n_seq_max = self.num_slots
        params.kv_unified = True
        params.n_batch = params.n_ubatch = _BATCH_TOKENS
        params.n_threads = params.n_threads_batch = threads
        params.no_perf = True
        context = self._lib.llama_init_from_model(self.llama.model, params)
        if not context:
            raise OpenRecipeError(
                f"llama.cpp could not create a context of {self.num_slots} x {self.context_length} tokens",
                where="--slots / --context-length",
                fix="use fewer slots or a shorter context length",
            )
        return context

    def _checked(self, template: ChatTemplate, model: str) -> str:
        """A template replacing the GGUF's own, refused when its control tokens are not in the vocabulary."""
        missing = [
            marker
            for marker in template.markers
            if len(self.llama.tokenize(marker.encode(), add_bos=False, special=True)) != 1
        ]
        if missing:
            raise OpenRecipeError(
                f"the {template.name} chat template needs {', '.join(missing)} as tokens, which {model} does not have",
                where="--chat-template",
                fix="use a template whose control tokens the model knows (mistral needs only BOS/EOS)",
            )
        return template.source

    @property
    def chat_template(self) -> str | None:
        return self._template

    def encode_chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        parse_control_tokens: bool = False,
    ) -> list[int]:
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        template = self._template
        if not template:
            raise OpenRecipeError("this GGUF has no chat template", fix="serve it with --chat-template NAME|FILE")
        compiled = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(template)

        def render(items: list[dict[str, Any]]) -> str:
            return compiled.render(messages=items, tools=tools, add_generation_prompt=True, bos_token="", eos_token="")

        def markup(text: str) -> list[int]:
            return self.llama.tokenize(text.encode(), add_bos=False, special=True)

        if parse_control_tokens:
            return markup(render(messages))
        return encode_chat_content_as_text(
            messages,
            render=render,
            tokenize_markup=markup,
            tokenize_text=lambda text: self.llama.tokenize(text.encode(), add_bos=False, special=False),
        )

    def encode_text(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=True, special=False)

    def decode_text(self, ids: list[int]) -> str:
        return self.llama.detokenize(ids).decode("utf-8", errors="replace")

    def compile_json_schema(self, schema: dict[str, Any]) -> JsonGrammar:
        import json

        from llama_cpp.llama_grammar import json_schema_to_gbnf

        try:
            source = json_schema_to_gbnf(json.dumps(schema))
        except Exception as error:  # llama.cpp's converter raises several types on unsupported schemas
            raise ValueError(f"the JSON schema cannot be used: {error}") from None
        probe = self._lib.llama_sampler_init_grammar(self._vocab, source.encode(), b"root")
        if not probe:
            raise ValueError("the JSON schema cannot be used: llama.cpp could not parse the grammar it converts to")
        self._lib.llama_sampler_free(probe)
        return JsonGrammar(source)

    def submit(self, request: GenerationRequest) -> None:
        self._queue.put(request)

    # The decode loop: one thread owns the context, the batch and every sampler.

    def _serve(self) -> None:
        running: dict[int, _Slot] = {}
        while True:
            if not self._admit(running):
                break
            try:
                self._step(running)
            except Exception as error:  # the running requests fail; the loop serves the next ones
                for slot in list(running.values()):
                    self._stats["failed_requests"] += 1
                    self._finish(running, slot, Failed(f"llama.cpp failed: {type(error).__name__}: {error}"))
        for slot in list(running.values()):
            self._finish(running, slot, Finished("cancelled", len(slot.request.prompt_ids), slot.produced))

    def _admit(self, running: dict[int, _Slot]) -> bool:
        """Take waiting requests into free slots (waiting for one when nothing runs); False once closed."""
        while len(running) < self.num_slots:
            try:
                request = self._queue.get(block=not running)
            except queue.Empty:
                return True
            if request is None:
                return False
            if request.cancelled.is_set():
                request.emit(Finished("cancelled", len(request.prompt_ids), 0))
                continue
            self._stats["requests"] += 1
            try:
                sampler = self._sampler(request)
            except Exception as error:  # a request llama.cpp cannot sample fails alone
                self._stats["failed_requests"] += 1
                request.emit(Failed(f"llama.cpp failed: {type(error).__name__}: {error}"))
                continue
            prompt = list(request.prompt_ids) or [self._lib.llama_vocab_bos(self._vocab)]
            seq_id, reused = self._reuse(prompt, set(range(self.num_slots)) - set(running))
            slot = _Slot(request, seq_id, sampler, pending=prompt[reused:], fed=prompt[:reused])
            running[seq_id] = slot
        return True

    def _reuse(self, prompt: list[int], free: set[int]) -> tuple[int, int]:
        """The free sequence whose kept tokens share the longest start with `prompt`, and how many of them stay
        (at least the prompt's last token is evaluated again: its logits pick the first reply token)."""

        def shared(seq_id: int) -> int:
            kept, length = self._kept.get(seq_id, []), 0
            while length < min(len(kept), len(prompt) - 1) and kept[length] == prompt[length]:
                length += 1
            return length

        seq_id = max(sorted(free), key=shared)
        reused = shared(seq_id)
        if seq_id in self._kept:
            del self._kept[seq_id]
            # Memories that cannot cut a sequence part-way (recurrent models) say so: start it afresh.
            if not self._lib.llama_memory_seq_rm(self._memory, seq_id, reused, -1):
                self._lib.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
                reused = 0
        self._stats["reused_prompt_tokens"] += reused
        return seq_id, reused

    def _sampler(self, request: GenerationRequest) -> Any:
        """The request's own chain: logit bias, penalties, grammar, then greedy or temperature/top-p."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if request.logit_bias:
            biases = (lib.llama_logit_bias * len(request.logit_bias))(
                *(lib.llama_logit_bias(token, bias) for token, bias in request.logit_bias.items())
            )
            lib.llama_sampler_chain_add(
                chain, lib.llama_sampler_init_logit_bias(self.vocab_size, len(request.logit_bias), biases)
            )
        if request.presence_penalty or request.frequency_penalty:
            lib.llama_sampler_chain_add(
                chain,
                lib.llama_sampler_init_penalties(
                    request.max_tokens, 1.0, request.frequency_penalty, request.presence_penalty
                ),
            )
        if request.grammar is not None:
            grammar = lib.llama_sampler_init_grammar(
                self._vocab, request.grammar.source.encode(), request.grammar.root.encode()
            )
            if not grammar:
                lib.llama_sampler_free(chain)
                raise ValueError("llama.cpp could not parse the grammar")
            lib.llama_sampler_chain_add(chain, grammar)
        if request.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            seed = lib.LLAMA_DEFAULT_SEED if request.seed is None else request.seed % 2**32  # 32-bit seeds
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(request.top_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(request.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def _step(self, running: dict[int, _Slot]) -> None:
        """One llama_decode over every running slot, then one sampled token for each slot that needs one."""
        for slot in [s for s in running.values() if s.request.cancelled.is_set()]:
            self._finish(running, slot, Finished("cancelled", len(slot.request.prompt_ids), slot.produced))
        if not running:
            return
        batch = self._batch
        outputs: list[tuple[int, _Slot]] = []
        count = 0

        def add(slot: _Slot, token: int, wants_logits: bool) -> None:
            nonlocal count
            batch.token[count], batch.pos[count] = token, slot.position
            batch.n_seq_id[count], batch.seq_id[count][0] = 1, slot.seq_id
            batch.logits[count] = wants_logits
            slot.fed.append(token)
            if wants_logits:
                outputs.append((count, slot))
            count += 1

        for slot in running.values():
            if slot.next_token is not None:
                add(slot, slot.next_token, True)
                slot.next_token = None
        for slot in running.values():
            chunk, slot.pending = slot.pending[: _BATCH_TOKENS - count], slot.pending[_BATCH_TOKENS - count :]
            for offset, token in enumerate(chunk):
                add(slot, token, not slot.pending and offset == len(chunk) - 1)
        batch.n_tokens = count
        self._stats["max_batch_size_seen"] = max(self._stats["max_batch_size_seen"], len(outputs))
        status = self._lib.llama_decode(self._context, batch)
        if status != 0:
            for slot in list(running.values()):
                self._stats["failed_requests"] += 1
                self._finish(running, slot, Failed(f"llama.cpp failed: llama_decode returned {status}"))
            return
        for index, slot in outputs:
            token = self._lib.llama_sampler_sample(slot.sampler, self._context, index)
            self._take(running, slot, token)

    def _take(self, running: dict[int, _Slot], slot: _Slot, token: int) -> None:
        """Stream a sampled token's text (held back while it may start a stop string); finish when done."""
        request = slot.request
        prompt_tokens = len(request.prompt_ids)
        end_of_generation = self._lib.llama_vocab_is_eog(self._vocab, token)
        if not end_of_generation:
            slot.produced += 1
            self._stats["generated_tokens"] += 1
        last = end_of_generation or slot.produced >= request.max_tokens
        last = last or slot.position >= self.context_length
        slot.text, stopped = apply_stops(slot.text + slot.decoder.decode(self._piece(token), final=last), request.stops)
        visible = len(slot.text) if stopped or last else len(slot.text) - held_back(slot.text, request.stops)
        if visible > slot.sent:
            request.emit(Delta(slot.text[slot.sent : visible]))
            slot.sent = visible
        if stopped or end_of_generation:
            self._finish(running, slot, Finished("stop", prompt_tokens, slot.produced))
        elif last:
            self._finish(running, slot, Finished("length", prompt_tokens, slot.produced))
        else:
            slot.next_token = token

    def _piece(self, token: int) -> bytes:
        if self._lib.llama_vocab_is_eog(self._vocab, token):
            return b""
        buffer = ctypes.create_string_buffer(64)
        size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:size]

    def _finish(self, running: dict[int, _Slot], slot: _Slot, event: Finished | Failed) -> None:
        if isinstance(event, Failed):  # what the cache holds after a failed decode is not known: drop it
            self._lib.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        else:
            self._kept[slot.seq_id] = slot.fed
        self._lib.llama_sampler_free(slot.sampler)
        del running[slot.seq_id]
        slot.request.emit(event)

    def served_models(self) -> list[tuple[str, str | None]]:
        return [(self.model_id, None)]

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._thread.is_alive():  # a decode still running: leave its memory to the process's exit
            return
        self._lib.llama_batch_free(self._batch)
        self._lib.llama_free(self._context)
        self.llama.close()


@ENGINES.register("llamacpp")
def llamacpp_engine(model: str, **options: Any) -> LlamaCppEngine:
    return LlamaCppEngine(model, **options)
