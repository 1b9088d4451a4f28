"""One manager owns checkpoint writing, validation, retention and discovery.

Layout: CHECKPOINT_DIR/step-00000042/ holding `*.safetensors`, `*.json`, `manifest.json` (SHA-256 of
every file) and `COMPLETE` (written last). A checkpoint is built in a `.tmp-*` sibling, fsynced and
renamed, so a crash mid-write leaves only a temporary folder that is ignored and cleaned up.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from openrecipe.utils.fs import atomic_directory
from openrecipe.utils.hashing import sha256_file

COMPLETE = "COMPLETE"
MANIFEST = "manifest.json"
PREFIX = "step-"


@dataclass
class LoadedCheckpoint:
    path: Path
    step: int
    tensors: dict[str, dict[str, torch.Tensor]]
    json: dict[str, Any]


class CorruptCheckpoint(Exception):
    """A checkpoint that fails validation (missing marker, checksum mismatch, unreadable file)."""


class CheckpointManager:
    def __init__(self, directory: Path, keep: int = 2, fault_hook: Callable[[str], None] | None = None) -> None:
        self.directory = Path(directory)
        self.keep = max(2, keep)
        self.fault_hook = fault_hook or (lambda where: None)

    def path_for(self, step: int) -> Path:
        return self.directory / f"{PREFIX}{step:08d}"

    def save(
        self,
        step: int,
        tensors: dict[str, dict[str, torch.Tensor]],
        json_parts: dict[str, Any],
        *,
        protect: set[int] | None = None,
    ) -> Path:
        """Write `{name}.safetensors` and `{name}.json` parts atomically, then prune old checkpoints
        (except the latest `keep` and the steps in `protect`, e.g. the best one)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.path_for(step)
        with atomic_directory(final, overwrite=True) as tmp:
            for name, group in tensors.items():
                save_file(
                    {key: value.contiguous() for key, value in group.items()},
                    str(tmp / f"{name}.safetensors"),
                )
                self.fault_hook("checkpoint_mid_write")
            for name, value in json_parts.items():
                (tmp / f"{name}.json").write_text(json.dumps(value, ensure_ascii=False))
            manifest = {path.name: sha256_file(path) for path in sorted(tmp.iterdir())}
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
            (tmp / COMPLETE).write_text(str(step))
        self._prune(protect or set())
        return final

    def _prune(self, protect: set[int]) -> None:
        complete = [path for path in self._candidates() if (path / COMPLETE).exists()]
        for old in complete[: -self.keep]:
            if int(old.name[len(PREFIX) :]) not in protect:
                shutil.rmtree(old, ignore_errors=True)

    def _candidates(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(path for path in self.directory.iterdir() if path.is_dir() and path.name.startswith(PREFIX))

    def clean_temporary(self) -> list[str]:
        """Remove folders left by a crash during a checkpoint write; return their names."""
        removed = []
        if self.directory.is_dir():
            for path in self.directory.iterdir():
                if path.name.startswith((".tmp-", ".old-")):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path.name)
        return removed

    def validate(self, path: Path) -> None:
        if not (path / COMPLETE).is_file():
            raise CorruptCheckpoint(f"{path.name}: no {COMPLETE} marker (interrupted write)")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise CorruptCheckpoint(f"{path.name}: unreadable manifest ({error})") from None
        for name, digest in manifest.items():
            file = path / name
            if not file.is_file():
                raise CorruptCheckpoint(f"{path.name}: {name} is missing")
            if sha256_file(file) != digest:
                raise CorruptCheckpoint(f"{path.name}: {name} does not match its SHA-256 (corrupted)")

    def load(self, path: Path) -> LoadedCheckpoint:
        self.validate(path)
        tensors = {p.stem: load_file(str(p)) for p in path.glob("*.safetensors")}
        parts = {p.stem: json.loads(p.read_text()) for p in path.glob("*.json") if p.name != MANIFEST}
        return LoadedCheckpoint(path, int((path / COMPLETE).read_text()), tensors, parts)

    def latest(self, report: Callable[[str], None] = print) -> LoadedCheckpoint | None:
        """The newest checkpoint that validates; broken newer ones are reported and skipped."""
        for path in sorted(self._candidates(), key=lambda p: int(p.name[len(PREFIX) :]), reverse=True):
            try:
                return self.load(path)
            except CorruptCheckpoint as error:
                report(f"skipping checkpoint {error}; using the previous one")
            except Exception as error:  # unreadable safetensors etc.
                report(f"skipping checkpoint {path.name}: {type(error).__name__}: {error}")
        return None

    def steps(self) -> list[int]:
        return [int(path.name[len(PREFIX) :]) for path in self._candidates() if (path / COMPLETE).exists()]


def fault_from_env() -> Callable[[str], None]:
    """Fault injection for the crash-safety tests: OPENRECIPE_FAULT=<point>@<step> SIGKILLs the process
    the first time `point` is reached at or after `step`. Unset in normal use."""
    spec = os.environ.get("OPENRECIPE_FAULT", "")
    if not spec:
        return lambda where: None
    point, _, step_text = spec.partition("@")
    state = {"step": 0}

    def hook(where: str) -> None:
        if where.startswith("step="):
            state["step"] = int(where[5:])
            where = "step"
        if where == point and state["step"] >= int(step_text or 0):
            import signal

            os.kill(os.getpid(), signal.SIGKILL)

    return hook
