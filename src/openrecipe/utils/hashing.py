"""Content hashes used by caches, checkpoints and the provenance manifest."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(root: str | os.PathLike[str], *, cached: bool = False) -> dict[str, str]:
    """SHA-256 of every file under `root`, keyed by POSIX relative path (sorted)."""
    digest = cached_sha256_file if cached else sha256_file
    root = Path(root)
    if root.is_file():
        return {root.name: digest(root)}
    out: dict[str, str] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        out[path.relative_to(root).as_posix()] = digest(path)
    return out


def sha256_json(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_of_tree(root: str | os.PathLike[str]) -> str:
    return sha256_json(sha256_tree(root))


def cached_sha256_file(path: str | os.PathLike[str]) -> str:
    """sha256_file, remembered by (path, size, mtime) under the openrecipe cache: large weights are hashed once."""
    from openrecipe.utils.fs import atomic_write_json, openrecipe_home

    path = Path(path)
    stat = path.stat()
    key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    index_path = openrecipe_home() / "digests.json"
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError):
        index = {}
    if key not in index:
        index[key] = sha256_file(path)
        atomic_write_json(index_path, index)
    return index[key]
