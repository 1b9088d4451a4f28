"""What every importer returns, and the pieces they share: writing and validating the recipe."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openrecipe.errors import OpenRecipeError

SCHEDULES = {
    "cosine": "cosine",
    "cosine_with_restarts": "cosine",
    "cosine_with_min_lr": "cosine",
    "linear": "linear",
    "constant": "constant",
    "constant_with_warmup": "constant",
}


@dataclass
class Imported:
    """A recipe as plain data, plus every source key that has no equivalent (key → why)."""

    recipe: dict[str, Any]
    unmapped: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def read_config(path: Path) -> dict[str, Any]:
    from openrecipe.config.loading import load_yaml_with_lines

    data, _ = load_yaml_with_lines(path)
    if not isinstance(data, dict):
        raise OpenRecipeError("expected a YAML mapping of settings", where=str(path))
    return data


def relative_to(target: Path, recipe_dir: Path) -> str:
    """A path as the recipe will name it: relative to the recipe's folder (the rule for every recipe path)."""
    return Path(os.path.relpath(target.resolve(), recipe_dir.resolve())).as_posix()


def schedule(name: Any, imported: Imported, key: str) -> str | None:
    if name is None:
        return None
    if str(name) in SCHEDULES:
        if SCHEDULES[str(name)] != name:
            imported.notes.append(f"{key}: {name} is imported as {SCHEDULES[str(name)]}")
        return SCHEDULES[str(name)]
    imported.unmapped[key] = f"schedule {name!r} has no equivalent (cosine, linear or constant)"
    return None


# Template names of LLaMA-Factory and axolotl that render as one of our built-ins.
TEMPLATE_ALIASES = {"qwen2": "qwen", "qwen25": "qwen", "qwen_25": "qwen", "gemma2": "gemma", "llama3_1": "llama3"}
MODEL_OWN_TEMPLATE = {"default", "tokenizer_default", "empty"}


def chat_template(name: Any, imported: Imported, key: str) -> str | None:
    """The recipe's `chat_template` for a tool's template name; a name with no built-in equivalent is reported
    and the model's own template is used."""
    from openrecipe.models.templates import BUILTIN_TEMPLATES

    if name is None:
        return None
    text = str(name)
    chosen = TEMPLATE_ALIASES.get(text, text)
    if chosen in BUILTIN_TEMPLATES:
        if chosen != text:
            imported.notes.append(f"{key}: {text} is imported as the built-in {chosen} template")
        return chosen
    if text not in MODEL_OWN_TEMPLATE:
        imported.unmapped[key] = (
            f"{text!r}: no built-in template of that name; the model's own is used (set `chat_template:` to one "
            f"of {', '.join(BUILTIN_TEMPLATES.names())} or a .jinja file)"
        )
    return None


def positive_or_none(value: Any) -> Any:
    return value if isinstance(value, int | float) and value > 0 else None


NULL_MEANS_NO_LIMIT = {"max_chars"}


def prune(value: Any) -> Any:
    """Drop None values and empty mappings so the recipe states only what the source config set
    (except keys where null is a setting: no limit)."""
    if isinstance(value, dict):
        pruned = {key: prune(item) for key, item in value.items()}
        return {
            key: item for key, item in pruned.items() if (item is not None or key in NULL_MEANS_NO_LIMIT) and item != {}
        }
    if isinstance(value, list):
        return [prune(item) for item in value]
    return value


def write_recipe(imported: Imported, out: Path, source: Path, tool: str) -> Path:
    """Write the recipe with a header naming its origin, then validate it like any recipe."""
    from openrecipe.recipe.schema import load_recipe

    header = [f"# Imported from {tool} config {source.name} by `openrecipe import {tool.lower()}`."]
    if imported.unmapped:
        header.append("# Settings with no equivalent (not imported):")
        header += [f"#   {key}: {why}" for key, why in sorted(imported.unmapped.items())]
    header += [f"# Note: {note}" for note in imported.notes]
    body = yaml.safe_dump(prune(imported.recipe), sort_keys=False, allow_unicode=True, width=110)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + body, encoding="utf-8")
    load_recipe(out)
    return out


ZERO_STAGE_IN_NAME = re.compile(r"z(?:ero)?_?([0-3])(?!\d)")  # ds_z3_config.json, zero2.json, zero3_bf16.json


def deepspeed_distributed(
    value: Any, folders: list[Path], imported: Imported, key: str = "deepspeed"
) -> dict[str, Any]:
    """A DeepSpeed JSON named by a peer config (looked for in `folders`) → `train.distributed`: its ZeRO stage
    carries over; batch sizes, clipping and precision come from the config's own keys, and offload has no
    equivalent (reported)."""
    path = next((folder / str(value) for folder in folders if (folder / str(value)).is_file()), None)
    stage: Any = None
    if path is not None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise OpenRecipeError(
                f"the DeepSpeed config named by {key} is not valid JSON: {error}",
                where=str(path),
                fix="fix the file, or remove the key to train on one process",
            ) from None
        zero = (data.get("zero_optimization") or {}) if isinstance(data, dict) else {}
        stage = zero.get("stage")
        offload = [name for name in ("offload_optimizer", "offload_param") if zero.get(name)]
        if offload:
            imported.unmapped[f"{key} ({', '.join(offload)})"] = "ZeRO offload has no equivalent; imported without it"
    else:
        match = ZERO_STAGE_IN_NAME.search(Path(str(value)).name.lower())
        stage = int(match.group(1)) if match else None
        imported.notes.append(f"{key}: {value} was not found; the ZeRO stage was read from its name")
    if stage == 0:
        return {"strategy": "ddp"}
    if stage in (2, 3):
        return {"strategy": "deepspeed", "zero_stage": stage}
    reason = "ZeRO stage 1 has no equivalent" if stage == 1 else f"the ZeRO stage ({stage!r}) could not be read"
    imported.unmapped[key] = f"{reason}; imported as stage 2 (train.distributed.zero_stage)"
    return {"strategy": "deepspeed", "zero_stage": 2}
