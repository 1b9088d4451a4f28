"""The ladder's corpus: real text that is on every machine and that nobody here wrote — the source of
Python's standard library — as UTF-8 bytes (token = byte, so no tokenizer has to be trained first and
the loss is bits per byte up to a constant). Files are split into train and held-out by path, once."""

from __future__ import annotations

import hashlib
import json
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from openrecipe.errors import OpenRecipeError
from openrecipe.utils.fs import atomic_write_bytes, atomic_write_json

VOCAB_SIZE = 257  # 256 byte values and one end-of-document token
END_OF_DOCUMENT = 256


@dataclass
class Corpus:
    train: np.ndarray  # uint16 token ids
    eval: np.ndarray
    meta: dict


def stdlib_files(root: Path | None = None) -> list[Path]:
    """Every .py file of the standard library (site-packages excluded), in a fixed order."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts and p.is_file())


def _held_out(path: Path, root: Path, eval_percent: int) -> bool:
    digest = hashlib.sha256(path.relative_to(root).as_posix().encode()).digest()
    return digest[0] * 100 // 256 < eval_percent


def prepare_corpus(
    out_dir: Path, *, source: str = "python-stdlib", root: Path | None = None, eval_percent: int = 2
) -> Corpus:
    """Build (or reuse) OUT_DIR/train.bin, eval.bin and corpus.json."""
    if source != "python-stdlib":
        raise OpenRecipeError(f"unknown ladder corpus {source!r}", fix="use corpus: python-stdlib")
    root = root or Path(sysconfig.get_paths()["stdlib"])
    meta_path = out_dir / "corpus.json"
    files = stdlib_files(root)
    if not files:
        raise OpenRecipeError(f"no Python files under {root}", fix="point the ladder at a Python installation")
    listing = hashlib.sha256("\n".join(str(p.relative_to(root)) for p in files).encode()).hexdigest()
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("listing_sha256") == listing and meta.get("eval_percent") == eval_percent:
            return Corpus(_load(out_dir / "train.bin"), _load(out_dir / "eval.bin"), meta)
    parts: dict[bool, list[bytes]] = {False: [], True: []}
    for path in files:
        parts[_held_out(path, root, eval_percent)].append(path.read_bytes())
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for held_out, name in ((False, "train"), (True, "eval")):
        joined = np.frombuffer(b"\0".join(parts[held_out]), dtype=np.uint8).astype(np.uint16)
        joined[joined == 0] = END_OF_DOCUMENT  # NUL does not occur in source text: it marks document ends
        atomic_write_bytes(out_dir / f"{name}.bin", joined.tobytes())
        arrays[name] = joined
    meta = {
        "source": source,
        "root": str(root),
        "files": len(files),
        "eval_files": len(parts[True]),
        "train_tokens": int(arrays["train"].size),
        "eval_tokens": int(arrays["eval"].size),
        "vocab_size": VOCAB_SIZE,
        "token": "byte",
        "listing_sha256": listing,
        "train_sha256": hashlib.sha256(arrays["train"].tobytes()).hexdigest(),
        "eval_percent": eval_percent,
    }
    atomic_write_json(meta_path, meta)
    return Corpus(arrays["train"], arrays["eval"], meta)


def _load(path: Path) -> np.ndarray:
    return np.fromfile(path, dtype=np.uint16)
