"""Engines behind optional extras: llama.cpp for GGUF files, vLLM for GPUs."""

from __future__ import annotations

import threading
from typing import Any

from openrecipe.errors import OpenRecipeError
from openrecipe.serve.engines.base import ENGINES, Delta, Failed, Finished, GenerationRequest, apply_stops


class LlamaCppEngine:
    """One llama.cpp context; requests run one at a time in a worker thread (llama.cpp batches internally)."""

    def __init__(self, model: str, *, model_id: str, **options: Any) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise OpenRecipeError(
                "the llamacpp engine needs llama-cpp-python",
                fix="pip install 'openrecipe[llamacpp]' (build it with AMX off on AMX CPUs; see README)",
            ) from None
        if not model.endswith(".gguf"):
            raise OpenRecipeError("the llamacpp engine serves .gguf files", fix="export one with `openrecipe export`")
        self.llama = Llama(model_path=model, n_ctx=options.get("context_length", 4096), verbose=False)
        self.model_id = model_id
        self.context_length = self.llama.n_ctx()
        self._lock = threading.Lock()

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise OpenRecipeError("this GGUF has no chat template")
        formatter = Jinja2ChatFormatter(template=template, eos_token="", bos_token="")
        prompt = formatter(messages=messages).prompt
        return self.llama.tokenize(prompt.encode(), add_bos=False, special=True)

    def encode_text(self, text: str) -> list[int]:
        return self.llama.tokenize(text.encode(), add_bos=True, special=False)

    def submit(self, request: GenerationRequest) -> None:
        threading.Thread(target=self._run, args=(request,), daemon=True).start()

    def _run(self, request: GenerationRequest) -> None:
        with self._lock:
            try:
                produced, text = 0, ""
                for chunk in self.llama.create_completion(
                    request.prompt_ids,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    top_p=request.top_p,
                    seed=request.seed,
                    stream=True,
                ):
                    if request.cancelled.is_set():
                        request.emit(Finished("cancelled", len(request.prompt_ids), produced))
                        return
                    produced += 1
                    piece = chunk["choices"][0]["text"]
                    cut, stopped = apply_stops(text + piece, request.stops)
                    if len(cut) > len(text):
                        request.emit(Delta(cut[len(text) :]))
                    text = cut
                    if stopped:
                        request.emit(Finished("stop", len(request.prompt_ids), produced))
                        return
                    reason = chunk["choices"][0].get("finish_reason")
                    if reason:
                        request.emit(Finished(reason, len(request.prompt_ids), produced))
                        return
                request.emit(Finished("stop", len(request.prompt_ids), produced))
            except Exception as error:
                request.emit(Failed(f"llama.cpp failed: {error}"))

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        self.llama.close()


@ENGINES.register("llamacpp")
def llamacpp_engine(model: str, **options: Any) -> LlamaCppEngine:
    return LlamaCppEngine(model, **options)


@ENGINES.register("vllm")
def vllm_engine(model: str, **options: Any):
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise OpenRecipeError("the vllm engine needs vLLM and a GPU", fix="pip install 'openrecipe[vllm]'") from None
    from openrecipe.serve.engines.vllm_engine import VllmEngine

    return VllmEngine(model, **options)
