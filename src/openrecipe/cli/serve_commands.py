"""`openrecipe serve`: an OpenAI-compatible server, safe by default."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command(help="Serve a model with an OpenAI-compatible API (127.0.0.1 unless told otherwise).")(serve)


def serve(
    model: str = typer.Argument(..., help="Any model reference: default, folder, adapter, .gguf, hub id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; non-loopback needs --api-key."),
    port: int = typer.Option(8000, "--port"),
    api_key: str | None = typer.Option(
        None,
        "--api-key",
        envvar="OPENRECIPE_API_KEY",
        help="Require 'Authorization: Bearer KEY' on every endpoint but /health.",
    ),
    admin_key: str | None = typer.Option(
        None,
        "--admin-key",
        envvar="OPENRECIPE_ADMIN_KEY",
        help="Enable /admin/adapters (load/unload at run time) for requests sending X-Admin-Key.",
    ),
    engine: str = typer.Option("transformers", "--engine", help="transformers, llamacpp (GGUF) or vllm (GPU)."),
    model_name: str | None = typer.Option(None, "--model-name", help="Model id clients send (default: folder name)."),
    system_prompt: str | None = typer.Option(None, "--system", help="System prompt for requests without one."),
    chat_template: str | None = typer.Option(
        None, "--chat-template", help="Built-in template (chatml, llama3, mistral, gemma, qwen) or a .jinja file."
    ),
    cors_origin: list[str] = typer.Option([], "--cors-origin", help="Browser origin allowed to call the API (repeat)."),
    max_body_bytes: int = typer.Option(1_000_000, "--max-body-bytes", help="Larger request bodies get 413."),
    max_tokens_cap: int = typer.Option(1024, "--max-tokens-cap", help="Requests asking for more get 400."),
    default_max_tokens: int = typer.Option(256, "--default-max-tokens", help="max_tokens when a request omits it."),
    max_concurrent: int = typer.Option(32, "--max-concurrent", help="In-flight requests beyond this get 429."),
    max_batch_size: int | None = typer.Option(
        None, "--max-batch-size", help="Requests decoded together (transformers: 8; vllm: vLLM's max_num_seqs)."
    ),
    decode_chunk: int = typer.Option(8, "--decode-chunk", help="Tokens per batch turn before switching batches."),
    request_timeout: float = typer.Option(300.0, "--request-timeout", help="Seconds before a request gets 504."),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds to send a request body before 408."),
    context_length: int | None = typer.Option(
        None, "--context-length", help="llamacpp: context tokens per slot; vllm: max model length."
    ),
    slots: int = typer.Option(1, "--slots", help="llamacpp: requests decoded together in one batch."),
    threads: int | None = typer.Option(
        None,
        "--threads",
        help="llamacpp: CPU threads per batch (default: one per physical core, as llama.cpp).",
    ),
    adapter: list[str] = typer.Option(
        [], "--adapter", help="NAME=PATH: serve a LoRA adapter as model NAME beside the base (repeat)."
    ),
    device: str = typer.Option("auto", "--device"),
    dtype: str = typer.Option("auto", "--dtype"),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", help="vllm: GPUs the model is split across."),
    gpu_memory_utilization: float = typer.Option(
        0.9, "--gpu-memory-utilization", help="vllm: share of GPU memory for weights and KV cache."
    ),
) -> None:
    from openrecipe.config.loading import validate_config
    from openrecipe.errors import OpenRecipeError
    from openrecipe.serve.config import ServeSettings
    from openrecipe.serve.run import serve as run_server

    adapters = {}
    for item in adapter:
        name, separator, path = item.partition("=")
        if not separator or not name or not path:
            raise OpenRecipeError(f"--adapter {item!r} is not NAME=PATH", fix="e.g. --adapter nova=runs/x/sft/adapter")
        adapters[name] = path
    settings = validate_config(
        ServeSettings,
        {
            "model": model,
            "host": host,
            "port": port,
            "api_key": api_key,
            "admin_key": admin_key,
            "engine": engine,
            "model_name": model_name,
            "system_prompt": system_prompt,
            "chat_template": chat_template,
            "cors_origins": cors_origin,
            "max_body_bytes": max_body_bytes,
            "max_tokens_cap": max_tokens_cap,
            "default_max_tokens": default_max_tokens,
            "max_concurrent": max_concurrent,
            "max_batch_size": max_batch_size,
            "decode_chunk": decode_chunk,
            "request_timeout_s": request_timeout,
            "body_timeout_s": body_timeout,
            "context_length": context_length,
            "slots": slots,
            "threads": threads,
            "adapters": adapters,
            "device": device,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
        },
        source="command line",
    )
    typer.echo(
        f"serving {settings.model} on http://{settings.host}:{settings.port}/v1 "
        f"({'API key required' if settings.api_key else 'no API key: loopback only'})"
    )
    run_server(settings)
