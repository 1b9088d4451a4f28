"""`openrecipe doctor`: what this machine runs — CPU features, torch precision, llama.cpp's CPU variant."""

from __future__ import annotations

import json
import platform
import sys

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console()

# The CPU features that change which kernels run (torch autocast, ggml's variants).
FLAGS_OF_INTEREST = (
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx_vnni",
    "avx512f",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "sve",
)


def register(app: typer.Typer) -> None:
    app.command(name="doctor", help="Show what this machine runs: CPU features, precision, llama.cpp variant.")(doctor)


def doctor(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table.")) -> None:
    report = collect()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title="openrecipe doctor", show_header=False)
    for key, value in _rows(report):
        table.add_row(key, escape(value))
    console.print(table)


def collect() -> dict:
    """Every fact `doctor` prints, as plain data (tests and bug reports read the JSON)."""
    from openrecipe import __version__

    return {
        "openrecipe": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": _cpu(),
        "torch": _torch(),
        "llama_cpp": _llama_cpp(),
        "distributed": _distributed(),
    }


def _cpu() -> dict:
    from openrecipe.models.precision import cpu_model_name

    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "model": cpu_model_name(),
        "machine": platform.machine(),
        "features": [flag for flag in FLAGS_OF_INTEREST if flag in flags],
    }


def _torch() -> dict:
    import torch

    from openrecipe.models.precision import cpu_precision_probe

    probe = cpu_precision_probe()
    return {
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "cpu_fp32_gflops": probe.fp32_gflops,
        "cpu_bf16_gflops": probe.bf16_gflops,
        "cpu_training_precision": probe.best,
        "cpu_probe_load_per_cpu": probe.load_per_cpu,  # the load it was measured under (high: may read low)
    }


def _llama_cpp() -> dict:
    from openrecipe.errors import OpenRecipeError
    from openrecipe.models.llamacpp import llama_cpp_runtime

    try:
        runtime = llama_cpp_runtime()
    except OpenRecipeError as error:
        return {"error": error.format()}
    return {
        "version": runtime.version,
        "cpu_variant": runtime.variant or "built in (no runtime dispatch)",
        "variants": runtime.scores,
    }


def _distributed() -> dict:
    """The multi-process strategies this install can run (`train.distributed.strategy`)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        deepspeed = version("deepspeed")
    except PackageNotFoundError:
        deepspeed = None
    return {"strategies": ["ddp", "fsdp", *(["deepspeed"] if deepspeed else [])], "deepspeed": deepspeed}


def _rows(report: dict) -> list[tuple[str, str]]:
    cpu, torch_info, llama = report["cpu"], report["torch"], report["llama_cpp"]
    rows = [
        ("openrecipe", report["openrecipe"]),
        ("python", report["python"]),
        ("platform", report["platform"]),
        ("cpu", f"{cpu['model']} ({cpu['machine']})"),
        ("cpu features", " ".join(cpu["features"]) or "none of interest"),
        ("torch", f"{torch_info['version']}, {torch_info['threads']} threads, cuda: {torch_info['cuda']}"),
        (
            "cpu matmul",
            f"fp32 {torch_info['cpu_fp32_gflops']} GFLOP/s, bf16 {torch_info['cpu_bf16_gflops']} GFLOP/s "
            f"→ training precision {torch_info['cpu_training_precision']}"
            + (
                f" (measured at load {load} per CPU)"
                if (load := torch_info["cpu_probe_load_per_cpu"]) is not None
                else " (load when measured: not recorded)"
            ),
        ),
    ]
    if "error" in llama:
        rows.append(("llama.cpp", llama["error"]))
    else:
        runnable = [name for name, score in llama["variants"].items() if score > 0]
        rows.append(("llama.cpp", f"{llama['version']}, cpu variant: {llama['cpu_variant']}"))
        if llama["variants"]:
            rows.append(("llama.cpp variants", f"{len(llama['variants'])} built; runnable here: {' '.join(runnable)}"))
    distributed = report["distributed"]
    deepspeed = distributed["deepspeed"]
    note = f" (deepspeed {deepspeed})" if deepspeed else " (deepspeed: pip install --no-build-isolation deepspeed)"
    rows.append(("multi-process", " ".join(distributed["strategies"]) + note))
    return rows
