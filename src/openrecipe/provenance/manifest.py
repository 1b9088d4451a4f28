"""What a run was made of: versions, platform, git commit, hashes of every input and artifact."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from openrecipe.utils.hashing import cached_sha256_file, sha256_file, sha256_json, sha256_tree

KEY_PACKAGES = (
    "openrecipe",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "safetensors",
    "gguf",
    "mergekit",
    "torchao",
    "tokenizers",
    "numpy",
    "pydantic",
    "llama-cpp-python",
)


def package_versions(names: tuple[str, ...] = KEY_PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def all_distributions() -> list[str]:
    """`name==version` for every installed distribution: the bundle's requirements.lock."""
    seen = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def git_commit(folder: Path) -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


@cache
def code_version() -> str:
    """The package version plus a hash of its source, so an edited checkout invalidates cached stages."""
    import openrecipe

    root = Path(openrecipe.__file__).parent
    digest = sha256_json({p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*.py"))})
    return f"{openrecipe.__version__}+{digest[:12]}"


def platform_info() -> dict[str, Any]:
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def hash_path(path: Path) -> str | dict[str, str]:
    return cached_sha256_file(path) if path.is_file() else sha256_tree(path, cached=True)
