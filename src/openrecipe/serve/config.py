"""Server settings; every one is also a `openrecipe serve` flag."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from openrecipe.config.base import StrictModel


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServeSettings(StrictModel):
    model: str
    model_name: str | None = Field(None, description="Id clients use in `model` (default: the folder/file name)")
    engine: str = "transformers"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    api_key: str | None = Field(None, min_length=8)
    admin_key: str | None = Field(
        None, min_length=8, description="Enables /admin (adapters at run time); send it as X-Admin-Key"
    )
    system_prompt: str | None = None
    chat_template: str | None = Field(
        None, description="Replaces the model's chat template: a built-in name (chatml, llama3, ...) or a .jinja file"
    )
    cors_origins: list[str] = Field(default_factory=list, description="Browser origins allowed to call the API")
    max_body_bytes: int = Field(1_000_000, ge=1024)
    max_tokens_cap: int = Field(1024, ge=1, description="Upper bound on max_tokens for any request")
    default_max_tokens: int = Field(256, ge=1)
    max_concurrent: int = Field(32, ge=1, description="In-flight requests beyond this get 429")
    max_batch_size: int | None = Field(
        None, ge=1, description="Requests decoded together (default: 8 on transformers, vLLM's own on vllm)"
    )
    request_timeout_s: float = Field(300.0, gt=0)
    body_timeout_s: float = Field(30.0, gt=0, description="Seconds a client may take to send its request body")
    decode_chunk: int = Field(8, ge=1, description="Tokens decoded per batch before switching to another batch")
    context_length: int | None = Field(
        None, ge=16, description="llamacpp: context tokens per slot (default 4096); vllm: max model length"
    )
    slots: int = Field(1, ge=1, le=64, description="llamacpp: requests decoded together in one shared KV cache")
    threads: int | None = Field(
        None, ge=1, description="llamacpp: CPU threads per batch (default: one per physical core, as llama.cpp)"
    )
    adapters: dict[str, str] = Field(
        default_factory=dict, description="transformers, vllm: LoRA adapters served beside the base, by model name"
    )
    tensor_parallel_size: int = Field(1, ge=1, description="vllm: GPUs the model is split across")
    gpu_memory_utilization: float = Field(
        0.9, gt=0, le=1, description="vllm: share of GPU memory for weights and KV cache"
    )
    log_bodies: bool = False
    device: str = "auto"
    dtype: str = "auto"
    trust_remote_code: bool = False

    @model_validator(mode="after")
    def _engine_specific_options(self) -> ServeSettings:
        if self.adapters and self.engine not in ("transformers", "vllm"):
            raise ValueError("--adapter needs the transformers or vllm engine (or merge the adapter and export it)")
        if self.threads is not None and self.engine != "llamacpp":
            raise ValueError("--threads applies to the llamacpp engine (torch's threads: OMP_NUM_THREADS)")
        if self.model_name is not None and self.model_name in self.adapters:
            raise ValueError(f"adapter name {self.model_name!r} is also the base model's name; pick another")
        return self

    @model_validator(mode="after")
    def _safe(self) -> ServeSettings:
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(
                f"refusing to listen on {self.host} without an API key: anyone on the network could use the model; "
                "pass --api-key (or set OPENRECIPE_API_KEY), or keep --host 127.0.0.1"
            )
        return self
