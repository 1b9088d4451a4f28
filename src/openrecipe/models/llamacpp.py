"""llama.cpp (through llama-cpp-python), loaded with the fastest CPU variant this machine can run.

`make install` builds ggml's CPU backend once per variant (x64 baseline, sse42, haswell/AVX2, skylakex/AVX-512,
zen4, …) as loadable libraries, so one install runs on any x86-64 or aarch64 CPU. ggml scores each variant by
the CPU's features; llama-cpp-python never points ggml's loader at its own library folder, so this module does,
before the first model is loaded. Import `llama_cpp` only through `load_llama_cpp()`.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

from openrecipe.errors import OpenRecipeError

VARIANT_ENV = "OPENRECIPE_LLAMA_CPU_VARIANT"
_PREFIX = "libggml-cpu-"
# Variants that use AMX tiles are skipped unless asked for by name: quantized GGUFs crashed in ggml's AMX
# kernels on AMX CPUs (llama.cpp issue #20824); the AVX-512 variants below them run the same files.
_OPT_IN_ONLY = frozenset({"sapphirerapids"})


@dataclass(frozen=True)
class LlamaCppRuntime:
    """What `openrecipe doctor` reports: the binding's version and the CPU variant ggml runs."""

    module: ModuleType
    version: str
    lib_dir: Path
    variant: str | None  # None: a build with one CPU backend linked in (no runtime dispatch)
    scores: dict[str, int]  # every variant built, with ggml's score on this CPU (0 = cannot run here)


def load_llama_cpp() -> ModuleType:
    """The `llama_cpp` module, with ggml's best CPU variant registered; a clear error when not installed."""
    return llama_cpp_runtime().module


@cache
def llama_cpp_runtime() -> LlamaCppRuntime:
    module = _import_binding()
    _quiet_unless_asked()
    lib_dir = Path(module.__file__).parent / "lib"
    libraries = {path.name[len(_PREFIX) : -len(".so")]: path for path in sorted(lib_dir.glob(f"{_PREFIX}*.so"))}
    if not libraries:
        return LlamaCppRuntime(module, module.__version__, lib_dir, None, {})
    scores = {name: _score(path) for name, path in libraries.items()}
    variant = _choose(scores)
    _register(lib_dir, libraries[variant])
    return LlamaCppRuntime(module, module.__version__, lib_dir, variant, scores)


def _import_binding() -> ModuleType:
    try:
        import llama_cpp
    except ImportError:
        raise OpenRecipeError(
            "llama.cpp is not installed (the llama-cpp-python package)",
            fix="run `make install`, or pip install 'openrecipe[llamacpp]'",
        ) from None
    return llama_cpp


def _quiet_unless_asked() -> None:
    """llama-cpp-python prints every ggml log line until a model is opened with verbose=False; keep loading the
    backend quiet too, unless the user set the `llama-cpp-python` logger's level themselves."""
    logger = logging.getLogger("llama-cpp-python")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)
    _forward_ggml_log_levels()


# ggml.h's order: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 (continues the previous line). The binding's
# own callback maps an older order (WARN 2, ERROR 3, DEBUG 4), so llama.cpp's warnings printed as errors — "n_ctx_seq
# (32768) > n_ctx_train (8192)" on every `serve --slots 8` — and its errors were dropped as debug lines.
GGML_LOG_LEVELS = {0: logging.CRITICAL, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_GGML_LOG_CONT = 5
_last_level = [logging.CRITICAL]  # what a continuation line continues


def ggml_log_line(level: int, text: bytes) -> None:
    """Print one ggml log line to stderr when the `llama-cpp-python` logger's level lets it through."""
    mapped = _last_level[0] if level == _GGML_LOG_CONT else GGML_LOG_LEVELS.get(level, logging.INFO)
    _last_level[0] = mapped
    if logging.getLogger("llama-cpp-python").level <= mapped:
        print(text.decode("utf-8", errors="replace"), end="", flush=True, file=sys.stderr)


@cache
def _forward_ggml_log_levels() -> Any:
    """Replace the binding's log callback with one that reads ggml's levels in ggml's order. The callback is
    returned so the cache keeps it alive: llama.cpp calls it for as long as the process runs."""
    import llama_cpp

    callback = llama_cpp.llama_log_callback(lambda level, text, _user_data: ggml_log_line(level, text))
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
    return callback


def _score(path: Path) -> int:
    """ggml's own feature check for one variant: 0 when this CPU lacks an instruction the variant uses."""
    library = ctypes.CDLL(str(path), mode=os.RTLD_LOCAL)
    function = getattr(library, "ggml_backend_score", None)
    if function is None:
        return 0
    function.restype = ctypes.c_int
    function.argtypes = []
    return int(function())


def _choose(scores: dict[str, int]) -> str:
    requested = os.environ.get(VARIANT_ENV, "").strip()
    if requested:
        if requested not in scores:
            raise OpenRecipeError(
                f"{VARIANT_ENV}={requested!r} is not a built llama.cpp CPU variant",
                fix=f"use one of: {', '.join(sorted(scores))}",
            )
        if scores[requested] <= 0:
            runnable = sorted(name for name, score in scores.items() if score > 0)
            raise OpenRecipeError(
                f"{VARIANT_ENV}={requested!r} needs CPU instructions this machine lacks",
                fix=f"unset it, or use one of: {', '.join(runnable)}",
            )
        return requested
    candidates = {name: score for name, score in scores.items() if score > 0 and name not in _OPT_IN_ONLY}
    if not candidates:
        raise OpenRecipeError(
            "no llama.cpp CPU variant runs on this CPU",
            fix=f"rebuild llama-cpp-python with `make install`; built: {', '.join(sorted(scores))}",
        )
    return max(candidates, key=lambda name: (candidates[name], name))


def _ggml_library(lib_dir: Path) -> Path:
    """The libggml file libllama links (by its soname, libggml.so.N): a wheel stores libggml.so, .so.N and
    .so.N.M.K as separate copies, and registering a backend in a copy libllama never reads does nothing."""
    versioned = sorted(lib_dir.glob("libggml.so.*"), key=lambda path: len(path.name))
    return versioned[0] if versioned else lib_dir / "libggml.so"


def _register(lib_dir: Path, path: Path) -> None:
    ggml = ctypes.CDLL(str(_ggml_library(lib_dir)))
    ggml.ggml_backend_reg_count.restype = ctypes.c_size_t
    if ggml.ggml_backend_reg_count() > 0:
        return  # a backend is registered already (loaded by llama.cpp itself); never register a second CPU
    ggml.ggml_backend_load.restype = ctypes.c_void_p
    ggml.ggml_backend_load.argtypes = [ctypes.c_char_p]
    if not ggml.ggml_backend_load(os.fsencode(path)):
        raise OpenRecipeError(f"llama.cpp could not load its CPU backend {path.name}", fix="re-run `make install`")
