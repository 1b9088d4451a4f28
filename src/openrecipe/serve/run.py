"""Start the server: build the engine, the app, and run uvicorn with graceful shutdown."""

from __future__ import annotations

import logging
from pathlib import Path

from openrecipe.serve.config import ServeSettings


def default_model_id(model: str) -> str:
    if model == "default":
        return "default"
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else path.name or model


def build(settings: ServeSettings):
    from openrecipe.serve.app import create_app
    from openrecipe.serve.engines import ENGINES

    factory = ENGINES.get(settings.engine)
    options: dict = {"model_id": settings.model_name or default_model_id(settings.model)}
    if settings.chat_template is not None:
        from openrecipe.models.templates import resolve_chat_template

        options["chat_template"] = resolve_chat_template(settings.chat_template)  # read once, before loading
    if settings.engine == "transformers":
        options.update(
            max_batch_size=settings.max_batch_size or 8,
            decode_chunk=settings.decode_chunk,
            device=settings.device,
            dtype=settings.dtype,
            trust_remote_code=settings.trust_remote_code,
            adapters=settings.adapters or None,
        )
    elif settings.engine == "llamacpp":
        options.update(slots=settings.slots, threads=settings.threads)
        if settings.context_length is not None:
            options.update(context_length=settings.context_length)
    elif settings.engine == "vllm":
        options.update(
            max_batch_size=settings.max_batch_size,
            device=settings.device,
            dtype=settings.dtype,
            trust_remote_code=settings.trust_remote_code,
            adapters=settings.adapters or None,
            context_length=settings.context_length,
            tensor_parallel_size=settings.tensor_parallel_size,
            gpu_memory_utilization=settings.gpu_memory_utilization,
        )
    engine = factory(settings.model, **options)
    return create_app(settings, engine), engine


def serve(settings: ServeSettings) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app, engine = build(settings)
    try:
        # uvicorn handles SIGTERM/SIGINT: stops accepting, lets in-flight requests finish, then exits.
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=30,
        )
    finally:
        engine.close()
