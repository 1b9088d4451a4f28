"""vLLM engine (GPU, optional extra). vLLM batches internally; requests waiting together are submitted
together. Replies are delivered whole (one stream chunk) — vLLM's offline API does not stream."""

from __future__ import annotations

import queue
import threading
from typing import Any

from openrecipe.serve.engines.base import Delta, Failed, Finished, GenerationRequest, apply_stops


class VllmEngine:
    def __init__(self, model: str, *, model_id: str, **options: Any) -> None:
        from vllm import LLM

        from openrecipe.models.loading import model_source_path
        from openrecipe.models.refs import resolve_model_ref

        path = model_source_path(resolve_model_ref(model))
        self.llm = LLM(model=str(path), trust_remote_code=bool(options.get("trust_remote_code")))
        self.tokenizer = self.llm.get_tokenizer()
        self.model_id = model_id
        self.context_length = int(self.llm.llm_engine.model_config.max_model_len)
        self._queue: queue.Queue[GenerationRequest] = queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._closing = threading.Event()
        self._thread.start()

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)

    def encode_text(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

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

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self._closing.set()
