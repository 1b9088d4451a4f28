"""One function that understands every way a user names a model."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from openrecipe.errors import OpenRecipeError
from openrecipe.models.templates import ChatTemplate

RefKind = Literal["default", "hf_folder", "gguf", "adapter", "hub"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model reference: what it is, where it lives, (for adapters) its base, and the chat template
    that replaces its own wherever it is loaded (a recipe's or a command's `chat_template`)."""

    kind: RefKind
    name: str
    path: Path | None = None
    base: ModelRef | None = None
    template: ChatTemplate | None = None

    def with_template(self, template: ChatTemplate | None) -> ModelRef:
        """This reference rendering chats with `template` (None: with the model's own)."""
        return self if template is None else replace(self, template=template)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise OpenRecipeError(f"cannot read {path}: {error}", fix="the file is corrupt; re-create it") from None


def _folder_ref(name: str, path: Path) -> ModelRef:
    if (path / "adapter_config.json").is_file():
        config = _read_json(path / "adapter_config.json")
        base_name = config.get("base_model_name_or_path")
        if not base_name:
            raise OpenRecipeError(
                f"{path}/adapter_config.json has no base_model_name_or_path",
                fix="set it to the base model's folder or hub id",
            )
        base_path = Path(base_name)
        if not base_path.is_absolute() and not base_path.exists() and (path / base_name).exists():
            base_name = str(path / base_name)
        return ModelRef("adapter", name, path, base=resolve_model_ref(base_name))
    if (path / "config.json").is_file():
        _read_json(path / "config.json")
        if not any((path / weight).exists() for weight in WEIGHT_FILES):
            raise OpenRecipeError(
                f"{path} has a config.json but no weights ({' or '.join(WEIGHT_FILES[:2])})",
                fix="the folder is incomplete; re-save the model",
            )
        return ModelRef("hf_folder", name, path)
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelRef("gguf", name, ggufs[0])
    found = ", ".join(sorted(p.name for p in path.iterdir())[:8]) or "nothing"
    raise OpenRecipeError(
        f"{path} is not a model folder (no config.json, adapter_config.json or single .gguf; found: {found})",
        fix="pass a Hugging Face model folder, a PEFT adapter folder, a .gguf file, or 'default'",
    )


def resolve_model_ref(name: str | ModelRef) -> ModelRef:
    """Resolve `default`, a local folder, a `.gguf` file, a PEFT adapter folder, or a hub id
    (a `ModelRef` is already resolved and comes back as it is)."""
    if isinstance(name, ModelRef):
        return name
    name = str(name).strip()
    if not name:
        raise OpenRecipeError("empty model reference", fix="pass 'default', a folder, a .gguf file or a hub id")
    if name == "default":
        from openrecipe.models.default import default_model_dir

        return ModelRef("default", name, default_model_dir())
    path = Path(name).expanduser()
    if path.is_dir():
        return _folder_ref(name, path.resolve())
    if path.is_file():
        if path.suffix.lower() == ".gguf":
            return ModelRef("gguf", name, path.resolve())
        raise OpenRecipeError(
            f"{path} is a file but not a .gguf model",
            fix="pass a model folder, a .gguf file, or 'default'",
        )
    if name.startswith((".", "/", "~")) or name.endswith(".gguf") or os.sep + os.sep in name:
        raise OpenRecipeError(f"model path not found: {name}", fix="check the path")
    if _HUB_ID.match(name):
        return ModelRef("hub", name)
    raise OpenRecipeError(
        f"model not found: {name!r} is neither a local path nor a hub id (owner/name)",
        fix="pass 'default', a model folder, a .gguf file or a hub id",
    )


def ensure_hub_available(repo_id: str, timeout: float = 5.0) -> None:
    """Fail fast, with a clear message, when a hub id cannot be fetched (offline, unknown repo)."""
    from huggingface_hub import constants, snapshot_download

    try:
        snapshot_download(repo_id, local_files_only=True, allow_patterns=["config.json"])
        return
    except Exception:
        pass
    hint = "pass a local model folder or .gguf file instead (or run online once to cache it)"
    if constants.HF_HUB_OFFLINE:
        raise OpenRecipeError(f"cannot fetch {repo_id!r}: HF_HUB_OFFLINE is set and it is not cached", fix=hint)
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        HfApi().model_info(repo_id, timeout=timeout)
    except RepositoryNotFoundError:
        raise OpenRecipeError(f"hub model {repo_id!r} does not exist or is private", fix=hint) from None
    except Exception as error:
        raise OpenRecipeError(
            f"cannot reach the Hugging Face Hub to fetch {repo_id!r} ({type(error).__name__})", fix=hint
        ) from None
