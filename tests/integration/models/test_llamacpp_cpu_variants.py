"""One llama.cpp install runs on any CPU: ggml's CPU variants are picked at run time.

The slow test runs a tiny GGUF under qemu-user emulating CPUs without AVX-512 (Haswell: AVX2; Nehalem: SSE4.2
only), so a build that assumed AVX-512 would die with SIGILL there, whatever CPU CI has.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python missing")

GENERATE = """
import json, sys
from openrecipe.models.llamacpp import llama_cpp_runtime
runtime = llama_cpp_runtime()
llama = runtime.module.Llama(model_path=sys.argv[1], n_ctx=64, n_threads=1, verbose=False)
out = llama.create_completion("hello", max_tokens=3, temperature=0)
print(json.dumps({"variant": runtime.variant, "tokens": out["usage"]["completion_tokens"]}))
"""


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_model_dir) -> Path:
    from openrecipe.export.gguf_export import export_gguf

    out = tmp_path_factory.mktemp("gguf")
    files = export_gguf(tiny_model_dir, out, ["q8_0"], name="tiny")
    return Path(files["q8_0"]["path"])


def _generate(gguf: Path, *prefix: str, env: dict | None = None) -> dict:
    completed = subprocess.run(
        [*prefix, sys.executable, "-c", GENERATE, str(gguf)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_the_best_runnable_variant_is_loaded_natively(tiny_gguf):
    from openrecipe.models.llamacpp import llama_cpp_runtime

    runtime = llama_cpp_runtime()
    if runtime.variant is None:
        pytest.skip("llama-cpp-python was built without runtime CPU dispatch")
    assert runtime.scores[runtime.variant] > 0
    assert "x64" in runtime.scores  # the baseline every x86-64 CPU runs
    result = _generate(tiny_gguf)
    assert result == {"variant": runtime.variant, "tokens": result["tokens"]} and result["tokens"] >= 1


def test_the_baseline_variant_can_be_forced(tiny_gguf):
    import os

    result = _generate(tiny_gguf, env={**os.environ, "OPENRECIPE_LLAMA_CPU_VARIANT": "x64"})
    assert result["variant"] == "x64" and result["tokens"] >= 1


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 CPU models")
@pytest.mark.skipif(shutil.which("qemu-x86_64") is None, reason="needs qemu-user (make system-deps)")
@pytest.mark.parametrize(("cpu", "variant"), [("Haswell-v4", "haswell"), ("Nehalem", "sse42")])
def test_runs_on_an_emulated_cpu_without_avx512(tiny_gguf, cpu, variant):
    result = _generate(tiny_gguf, "qemu-x86_64", "-cpu", cpu)
    assert result["variant"] == variant and result["tokens"] >= 1
