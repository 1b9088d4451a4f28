"""Open a data source: detect its format, read every row through the strict readers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from openrecipe.config.common import Identity
from openrecipe.data.config import DataSource
from openrecipe.data.readers import READERS, ReadContext
from openrecipe.data.records import Record
from openrecipe.data.validation import DataError, Rejections
from openrecipe.errors import OpenRecipeError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
KEY_TO_FORMAT = (
    ("messages", "messages"),
    ("conversations", "sharegpt"),
    ("instruction", "alpaca"),
    ("text", "text"),
)


@dataclass
class LoadedSource:
    source: DataSource
    records: list[Record]
    rejections: Rejections
    format: str


def _first_row_keys(path: Path) -> list[str]:
    head = path.read_bytes()[:65536].decode("utf-8-sig", errors="replace").lstrip()
    decoder = json.JSONDecoder()
    try:
        row, _ = decoder.raw_decode(head[1:].lstrip() if head.startswith("[") else head)
    except (json.JSONDecodeError, ValueError):
        return []
    return list(row) if isinstance(row, dict) else []


def detect_format(path: Path) -> str:
    """Pick a reader from the extension and, for JSON, the first row's keys."""
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in (".txt", ".md"):
        return "text"
    if suffix in (".csv", ".xlsx", ".xlsm"):
        return "table"
    if suffix in (".json", ".jsonl"):
        if not path.read_bytes().strip():
            raise DataError("file is empty", where=str(path), fix="add data, or remove the file from the recipe")
        keys = _first_row_keys(path)
        for key, name in KEY_TO_FORMAT:
            if key in keys:
                return name
        raise DataError(
            f"cannot detect the format from the first row's fields ({', '.join(keys) or 'none found'})",
            where=f"{path}:1",
            fix=f"set `format:` to one of: {', '.join(READERS.names())}",
        )
    raise DataError(
        f"unsupported file type {suffix or '(none)'!r}",
        where=str(path),
        fix="use .jsonl, .json, .csv, .xlsx, .txt, .md, or a folder of .txt/.md files",
    )


def load_source(source: DataSource, *, identity: Identity | None = None, base_dir: Path | None = None) -> LoadedSource:
    """Read one source fully; strict mode raises at the first bad row, skip mode counts rejections."""
    path = Path(source.path).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    rejections = Rejections(on_error=source.on_error, max_rejected_fraction=source.max_rejected_fraction)
    context = ReadContext(identity=identity)
    if not path.exists():
        if _HUB_ID.match(source.path) and not source.path.startswith((".", "/")):
            return _load_hub(source, context, rejections)
        raise OpenRecipeError(f"data file not found: {source.path}", fix="check the path in the data source")
    name = detect_format(path) if source.format == "auto" else source.format
    reader = READERS.get(name)
    records = list(reader(path, source, context, rejections))
    if not records and not rejections.total:
        raise DataError("no rows found", where=str(path))
    rejections.check(str(path))
    return LoadedSource(source, records, rejections, name)


def _load_hub(source: DataSource, context: ReadContext, rejections: Rejections) -> LoadedSource:
    """A hub dataset: downloaded through `datasets`, written to JSONL, then read like a local file."""
    import tempfile

    from huggingface_hub import constants

    hint = "download it once while online, or pass a local file"
    if constants.HF_HUB_OFFLINE:
        raise OpenRecipeError(f"cannot fetch dataset {source.path!r}: HF_HUB_OFFLINE is set", fix=hint)
    try:
        import datasets

        dataset = datasets.load_dataset(source.path, split=source.split)
    except Exception as error:
        raise OpenRecipeError(f"cannot load hub dataset {source.path!r} ({type(error).__name__})", fix=hint) from None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / f"{source.path.replace('/', '__')}.jsonl"
        dataset.to_json(str(local), force_ascii=False)
        local_source = source.model_copy(update={"path": str(local)})
        loaded = load_source(local_source, identity=context.identity)
    return LoadedSource(source, loaded.records, loaded.rejections, loaded.format)
