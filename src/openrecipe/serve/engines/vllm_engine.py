"""vLLM engine (GPU, optional extra). vLLM batches internally; requests waiting together are submitted
together. Replies are delivered whole (one stream chunk) — vLLM's offline API does not stream."""

from __future__ import annotations

import queue
import threading
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines.base import ENGINES, Delta, Failed, Finished, GenerationRequest, apply_stops


class VllmEngine:
    unsupported_params = ("logprobs", "top_logprobs", "logit_bias", "response_format", "tools")

    def __init__(self, model: str, *, model_id: str, **options: Any) -> None:
        from vllm import LLM

        from openrecipe.models.loading import model_source_path
        from openrecipe.models.refs import resolve_model_ref

        path = model_source_path(resolve_model_ref(model))
        self.llm = LLM(model=str(path), trust_remote_code=bool(options.get("trust_remote_code")))
        self.tokenizer = self.llm.get_tokenizer()
        if options.get("chat_template") is not None:
            from openrecipe.models.templates import use_chat_template

            use_chat_template(self.tokenizer, options["chat_template"], model_name=model)
        self.model_id = model_id
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        self.vocab_size = len(self.tokenizer)
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._closing = threading.Event()
        self._thread.start()

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
        from openrecipe.serve.engines.base import encode_chat_with_tokenizer

        def render(items: list[dict[str, Any]]) -> str:
            return self.tokenizer.apply_chat_template(items, tools=tools, add_generation_prompt=True, tokenize=False)

        return encode_chat_with_tokenizer(
            self.tokenizer, messages, render=render, parse_control_tokens=parse_control_tokens
        )

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text, split_special_tokens=True)["input_ids"]

    def compile_json_schema(self, schema: dict[str, Any]) -> Any:
        raise ValueError("the vllm engine does not constrain decoding yet; use the transformers or llamacpp engine")

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids)

    def submit(self, request: GenerationRequest) -> None:
        self._queue.put(request)

    def _work(self) -> None:
        from vllm import SamplingParams, TokensPrompt

        while not self._closing.is_set():
            try:
                batch = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                continue
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                params = [
                    SamplingParams(
                        max_tokens=r.max_tokens,
                        temperature=r.temperature,
                        top_p=r.top_p,
                        seed=r.seed,
                        presence_penalty=r.presence_penalty,
                        frequency_penalty=r.frequency_penalty,
                        stop=r.stops or None,
                    )
                    for r in batch
                ]
                outputs = self.llm.generate(
                    [TokensPrompt(prompt_token_ids=r.prompt_ids) for r in batch], params, use_tqdm=False
                )
                for request, output in zip(batch, outputs, strict=True):
                    completion = output.outputs[0]
                    text, _ = apply_stops(completion.text, request.stops)
                    if text:
                        request.emit(Delta(text))
                    reason = "length" if completion.finish_reason == "length" else "stop"
                    request.emit(Finished(reason, len(request.prompt_ids), len(completion.token_ids)))
            except Exception as error:
                for request in batch:
                    request.emit(Failed(f"vLLM failed: {error}"))

    def served_models(self) -> list[tuple[str, str | None]]:
        return [(self.model_id, None)]

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self._closing.set()


@ENGINES.register("vllm")
def vllm_engine(model: str, **options: Any) -> VllmEngine:
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise OpenRecipeError("the vllm engine needs vLLM and a GPU", fix="pip install 'openrecipe[vllm]'") from None
    return VllmEngine(model, **options)
