"""LLaMA-Factory's `dataset_info.json`: one entry names a file (or hub dataset), its layout and its columns.

A data source can point at the registry itself (`path: data/dataset_info.json`, `dataset: <entry>`);
the entry becomes an ordinary source with a column mapping, so every reader treats it the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openrecipe.data.config import ColumnMap, DataSource, RoleTags
from openrecipe.data.validation import DataError
from openrecipe.registry import did_you_mean

LOCATION_KEYS = ("file_name", "hf_hub_url", "ms_hub_url", "om_hub_url", "script_url", "cloud_file_name")
UNSUPPORTED_COLUMNS = ("images", "videos", "audios", "chosen", "rejected", "kto_tag")
OPENAI_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}


def read_dataset_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise DataError(f"cannot read dataset_info.json ({error})", where=str(path)) from None
    if not isinstance(info, dict):
        raise DataError("dataset_info.json must map dataset names to entries", where=str(path))
    return info


def is_dataset_info(path: Path) -> bool:
    """A LLaMA-Factory registry (entries with file_name/hf_hub_url…), not the `datasets` metadata file."""
    if not path.is_file() or path.suffix.lower() != ".json" or path.stat().st_size > 16 << 20:
        return False
    if path.name != "dataset_info.json":
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        return False
    return (
        isinstance(info, dict)
        and bool(info)
        and all(isinstance(entry, dict) and any(key in entry for key in LOCATION_KEYS) for entry in info.values())
    )


def pick_entry(info: dict[str, Any], name: str | None, where: str) -> tuple[str, dict[str, Any]]:
    names = sorted(info)
    if name is None:
        if len(names) == 1:
            return names[0], info[names[0]]
        raise DataError(
            f"dataset_info.json has {len(names)} entries; which one?",
            where=where,
            fix=f"set `dataset:` to one of: {', '.join(names[:20])}" + (" …" if len(names) > 20 else ""),
        )
    if name not in info:
        suggestion = did_you_mean(name, names)
        raise DataError(
            f"no dataset {name!r} in dataset_info.json" + (f"; did you mean {suggestion!r}?" if suggestion else ""),
            where=where,
            fix=f"entries: {', '.join(names[:20])}" + (" …" if len(names) > 20 else ""),
        )
    return name, info[name]


def entry_to_source(name: str, entry: dict[str, Any], base: DataSource | None, where: str) -> tuple[DataSource, bool]:
    """A dataset_info entry as a DataSource (path relative to the registry's folder); second value: is it local."""
    if entry.get("ranking"):
        raise DataError(f"dataset {name!r} is preference data (ranking: true)", where=where, fix="use SFT or text data")
    columns = dict(entry.get("columns") or {})
    unsupported = sorted(set(columns) & set(UNSUPPORTED_COLUMNS))
    if unsupported:
        raise DataError(
            f"dataset {name!r} uses column {unsupported[0]!r}, which openrecipe does not train on",
            where=where,
            fix="use text-only SFT or text data",
        )
    unknown = sorted(set(columns) - set(ColumnMap.model_fields))
    if unknown:
        raise DataError(f"dataset {name!r}: unknown column key {unknown[0]!r}", where=where)
    formatting = entry.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt", "openai"):
        raise DataError(f"dataset {name!r}: unknown formatting {formatting!r}", where=where, fix="alpaca or sharegpt")
    tags = RoleTags(**(entry.get("tags") or {})) if formatting != "alpaca" else None
    if formatting == "openai":
        tags = RoleTags(**{**OPENAI_TAGS, **(entry.get("tags") or {})})
    layout = "alpaca" if formatting == "alpaca" else "sharegpt"
    if layout == "alpaca" and "prompt" in columns and not ({"response", "query", "history"} & set(columns)):
        # LLaMA-Factory's pre-training entries map only `prompt` (to the text column).
        layout, columns = "text", {"text": columns["prompt"], **{k: v for k, v in columns.items() if k != "prompt"}}
    local = "file_name" in entry and not any(entry.get(key) for key in ("hf_hub_url", "ms_hub_url", "om_hub_url"))
    if not local and not entry.get("hf_hub_url"):
        key = next(key for key in LOCATION_KEYS if entry.get(key))
        raise DataError(f"dataset {name!r} is loaded from {key}, which openrecipe cannot read", where=where)
    settings: dict[str, Any] = base.model_dump(exclude_unset=True) if base is not None else {}
    settings.pop("dataset", None)
    settings.update(
        path=entry["file_name"] if local else entry["hf_hub_url"],
        format=layout,
        name=(base.name if base is not None else None) or name,
        columns=ColumnMap(**columns) if columns else None,
        tags=tags,
    )
    for key in ("split", "subset"):
        if entry.get(key):
            settings[key] = entry[key]
    return DataSource(**settings), local


def resolve_dataset_info(path: Path, source: DataSource) -> tuple[DataSource, Path]:
    """The source an entry of `path` describes, and the folder its file is relative to."""
    info = read_dataset_info(path)
    name, entry = pick_entry(info, source.dataset, str(path))
    resolved, _ = entry_to_source(name, entry, source, f"{path} ({name})")
    return resolved, path.parent
