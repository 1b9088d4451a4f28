"""The llama.cpp engine for GGUF files: parallel slots, each a llama.cpp context on the shared weights.

The GGUF header is bounds-checked before llama.cpp opens the file, so a truncated or hostile file is a
user error, not a crash. Each slot is its own `Llama` context served by its own thread; the weights are
memory-mapped, so the slots share one copy of them.
"""

from __future__ import annotations

import queue
import threading
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
        chat_template: ChatTemplate | None = None,
        **options: Any,
    ) -> None:
        from openrecipe.models.gguf_header import check_gguf
        from openrecipe.models.llamacpp import load_llama_cpp

        if not model.endswith(".gguf"):
            raise OpenRecipeError("the llamacpp engine serves .gguf files", fix="export one with `openrecipe export`")
        check_gguf(Path(model))
        llama_cpp = load_llama_cpp()
        self._contexts = [
            llama_cpp.Llama(model_path=model, n_ctx=context_length, verbose=False) for _ in range(max(1, slots))
        ]
        self.llama = self._contexts[0]  # tokenizing and templates: any context will do
        self._template = self.llama.metadata.get("tokenizer.chat_template")
        if chat_template is not None:
            self._template = self._checked(chat_template, model)
        self.model_id = model_id
        self.context_length = self.llama.n_ctx()
        self.vocab_size = self.llama.n_vocab()
        self._queue: queue.Queue[GenerationRequest | None] = queue.Queue()
        self._stats = {"requests": 0, "generated_tokens": 0, "failed_requests": 0, "slots": len(self._contexts)}
        self._threads = [
            threading.Thread(target=self._serve_slot, args=(context,), name=f"openrecipe-llamacpp-{i}", daemon=True)
            for i, context in enumerate(self._contexts)
        ]
        for thread in self._threads:
            thread.start()

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

    def compile_json_schema(self, schema: dict[str, Any]) -> Any:
        import json

        from openrecipe.models.llamacpp import load_llama_cpp

        try:
            return load_llama_cpp().LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
        except Exception as error:  # llama.cpp's converter raises several types on unsupported schemas
            raise ValueError(f"the JSON schema cannot be used: {error}") from None

    def submit(self, request: GenerationRequest) -> None:
        self._queue.put(request)

    def _serve_slot(self, context) -> None:
        while True:
            request = self._queue.get()
            if request is None:
                return
            if request.cancelled.is_set():
                request.emit(Finished("cancelled", len(request.prompt_ids), 0))
                continue
            self._stats["requests"] += 1
            try:
                self._generate(context, request)
            except Exception as error:  # this request fails alone; the slot serves the next one
                self._stats["failed_requests"] += 1
                request.emit(Failed(f"llama.cpp failed: {type(error).__name__}: {error}"))

    def _generate(self, context, request: GenerationRequest) -> None:
        produced, text, sent = 0, "", 0
        prompt_tokens = len(request.prompt_ids)
        for chunk in context.create_completion(
            request.prompt_ids,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=None if request.seed is None else request.seed % 2**32,  # llama.cpp seeds are 32-bit
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            logit_bias=request.logit_bias or None,
            grammar=request.grammar,
            stream=True,
        ):
            if request.cancelled.is_set():
                request.emit(Finished("cancelled", prompt_tokens, produced))
                return
            produced += 1
            choice = chunk["choices"][0]
            # llama-cpp-python holds back incomplete UTF-8 characters itself, so `text` is always whole.
            text, stopped = apply_stops(text + choice["text"], request.stops)
            visible = (
                len(text) if stopped or choice.get("finish_reason") else len(text) - held_back(text, request.stops)
            )
            if visible > sent:
                request.emit(Delta(text[sent:visible]))
                sent = max(sent, visible)
            self._stats["generated_tokens"] += 1
            if stopped:
                request.emit(Finished("stop", prompt_tokens, produced))
                return
            if choice.get("finish_reason"):
                request.emit(Finished(choice["finish_reason"], prompt_tokens, produced))
                return
        request.emit(Finished("stop", prompt_tokens, produced))

    def served_models(self) -> list[tuple[str, str | None]]:
        return [(self.model_id, None)]

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
        for context in self._contexts:
            context.close()


@ENGINES.register("llamacpp")
def llamacpp_engine(model: str, **options: Any) -> LlamaCppEngine:
    return LlamaCppEngine(model, **options)
