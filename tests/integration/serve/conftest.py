"""A real uvicorn server on a loopback port, serving the tiny model."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from openrecipe.serve.config import ServeSettings
from openrecipe.serve.run import build

API_KEY = "test-key-123456"


def llama_server_binary() -> Path | None:
    """llama.cpp's own server as `make llama-server` builds it (or $OPENRECIPE_LLAMA_SERVER): one that runs here."""
    named = os.environ.get("OPENRECIPE_LLAMA_SERVER")
    found = sorted(
        (Path.home() / ".cache/openrecipe/llama-server").glob("*/build/bin/llama-server"),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for binary in [Path(named)] if named else found:
        try:
            subprocess.run([str(binary), "--version"], capture_output=True, timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            continue
        return binary
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(**overrides):
    port = free_port()
    settings = ServeSettings(**{"model": overrides.pop("model"), "port": port, "model_name": "tiny", **overrides})
    app, engine = build(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base, engine
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()


@contextmanager
def running_llama_server(
    binary: Path, gguf: Path, *, slots: int, context_length: int, threads: int | None = None, api_key: str | None = None
):
    """llama.cpp's own server on a free loopback port: `slots` parallel slots of `context_length` tokens each,
    the model served as "tiny"; its log goes to a file beside the GGUF; stopped at the end."""
    port = free_port()
    log = gguf.with_name(f"llama-server-{port}.log")
    command = [str(binary), "-m", str(gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", "tiny"]
    command += ["-c", str(slots * context_length), "-np", str(slots), "--jinja", "--no-webui", "--no-warmup"]
    command += ["-t", str(threads)] if threads else []
    command += ["--api-key", api_key] if api_key else []
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(1200):
            if process.poll() is not None:
                raise AssertionError(f"llama-server exited with {process.returncode}; see {log}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise AssertionError(f"llama-server did not become healthy in 120 s; see {log}")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(tiny_model_dir):
    with running_server(model=str(tiny_model_dir), api_key=API_KEY, max_tokens_cap=64, max_body_bytes=20_000) as s:
        yield s


@pytest.fixture
def client(server):
    from openai import OpenAI

    base, _ = server
    return OpenAI(base_url=f"{base}/v1", api_key=API_KEY, max_retries=0, timeout=60)
