"""Open a data source: resolve where it lives, detect its layout, stream every row through the strict readers."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openrecipe.config.common import Identity
from openrecipe.data.config import DataSource
from openrecipe.data.containers import first_row, is_row_container, is_saved_dataset
from openrecipe.data.dataset_info import is_dataset_info, resolve_dataset_info
from openrecipe.data.readers import READERS, TEXT_SUFFIXES, ReadContext, text_files
from openrecipe.data.records import Record
from openrecipe.data.validation import DataError, FieldPolicy, Rejections
from openrecipe.errors import OpenRecipeError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
KEY_TO_FORMAT = (
    ("messages", "messages"),
    ("conversations", "sharegpt"),
    ("instruction", "alpaca"),
    ("text", "text"),
)
TABLE_SUFFIXES = (".csv", ".tsv", ".xlsx", ".xlsm")


@dataclass
class LoadedSource:
    source: DataSource
    records: list[Record]
    rejections: Rejections
    format: str


@dataclass
class SourceStream:
    """A source opened for streaming: iterate `records` once; `rejections` fills in as it goes."""

    source: DataSource
    paths: list[Path]
    format: str
    rejections: Rejections
    context: ReadContext

    @property
    def records(self) -> Iterator[Record]:
        count = 0
        reader = READERS.get(self.format)
        for path in self.paths:
            for record in reader(path, self.source, self.context, self.rejections):
                count += 1
                yield record
        where = str(self.paths[0]) if len(self.paths) == 1 else str(self.paths[0].parent)
        if not count and not self.rejections.total:
            raise DataError("no rows found", where=where)
        self.rejections.check(where)


def _first_json_keys(path: Path) -> list[str]:
    with open(path, "rb") as handle:
        head_bytes = handle.read(65536)
    if b"\x00" in head_bytes:
        line = head_bytes[: head_bytes.index(b"\x00")].count(b"\n") + 1
        from openrecipe.data.jsonio import _nul_error

        raise _nul_error(f"{path}:{line}", head_bytes)
    head = head_bytes.decode("utf-8-sig", errors="replace").lstrip()
    decoder = json.JSONDecoder()
    try:
        row, _ = decoder.raw_decode(head[1:].lstrip() if head.startswith("[") else head)
    except (json.JSONDecodeError, ValueError, RecursionError):
        return []
    return list(row) if isinstance(row, dict) else []


def _is_blank(path: Path) -> bool:
    with open(path, "rb") as handle:
        return not handle.read(1 << 16).strip() and not handle.read(1)


def detect_format(path: Path, source: DataSource | None = None) -> str:
    """Pick a reader from the extension and, for row files, the first row's keys (after any column mapping)."""
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES or (path.is_dir() and not is_row_container(path)):
        return "text"
    if path.is_dir() and not is_saved_dataset(path) and text_files(path):
        return "text"
    if suffix in TABLE_SUFFIXES:
        return "table"
    if not is_row_container(path):
        raise DataError(
            f"unsupported file type {suffix or '(none)'!r}",
            where=str(path),
            fix="use .jsonl, .json, .parquet, .arrow, .csv, .tsv, .xlsx, .txt, .md, or a folder of such files",
        )
    if suffix in (".json", ".jsonl"):
        if _is_blank(path):
            raise DataError("file is empty", where=str(path), fix="add data, or remove the file from the recipe")
        keys = _first_json_keys(path)
    else:
        row = first_row(path, source.split if source else "train")
        keys = list(row) if isinstance(row, dict) else []
    if source is not None and source.columns is not None:
        mapped = source.columns
        for key, name in ((mapped.messages, "messages"), (mapped.prompt, "alpaca"), (mapped.text, "text")):
            if key and key in keys:
                return "sharegpt" if name == "messages" and source.tags is not None else name
    for key, name in KEY_TO_FORMAT:
        if key in keys:
            return name
    raise DataError(
        f"cannot detect the format from the first row's fields ({', '.join(keys) or 'none found'})",
        where=f"{path}:1",
        fix=f"set `format:` to one of: {', '.join(READERS.names())} (and `columns:` to name the fields)",
    )


def _resolve_path(source: DataSource, base_dir: Path | None) -> Path | None:
    path = Path(source.path).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        path = base_dir / path
    return path if path.exists() else None


def open_source(source: DataSource, *, identity: Identity | None = None, base_dir: Path | None = None) -> SourceStream:
    """Resolve a source (file, folder, dataset_info.json entry, cached hub dataset) for streaming."""
    path = _resolve_path(source, base_dir)
    if path is not None and is_dataset_info(path):
        source, resolved = resolve_dataset_info(path, source)
        return open_source(source, identity=identity, base_dir=resolved)
    if path is not None:
        paths = [path]
    elif _HUB_ID.match(source.path) and not source.path.startswith((".", "/")):
        paths = hub_snapshot(source)
    else:
        raise OpenRecipeError(f"data file not found: {source.path}", fix="check the path in the data source")
    rejections = Rejections(
        on_error=source.on_error,
        max_rejected_fraction=source.max_rejected_fraction,
        fields=FieldPolicy(strict=source.unknown_fields == "error"),
    )
    name = detect_format(paths[0], source) if source.format == "auto" else source.format
    READERS.get(name)
    return SourceStream(source, paths, name, rejections, ReadContext(identity=identity))


def load_source(source: DataSource, *, identity: Identity | None = None, base_dir: Path | None = None) -> LoadedSource:
    """Read one source fully (small data); strict mode raises at the first bad row, skip mode counts rejections."""
    stream = open_source(source, identity=identity, base_dir=base_dir)
    records = list(stream.records)
    return LoadedSource(source, records, stream.rejections, stream.format)


def hub_snapshot(source: DataSource) -> list[Path]:
    """A hub dataset's files from the local Hugging Face cache (downloaded first only when online)."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    hint = "download it once while online (hf download --repo-type dataset ID), or pass a local file"
    try:
        folder = Path(snapshot_download(source.path, repo_type="dataset", local_files_only=True))
    except LocalEntryNotFoundError:
        if constants.HF_HUB_OFFLINE:
            raise OpenRecipeError(
                f"cannot fetch dataset {source.path!r}: not in the local cache and HF_HUB_OFFLINE is set", fix=hint
            ) from None
        try:
            folder = Path(snapshot_download(source.path, repo_type="dataset"))
        except Exception as error:
            raise OpenRecipeError(
                f"cannot load hub dataset {source.path!r} ({type(error).__name__})", fix=hint
            ) from None
    return split_files(folder, source.split, source.subset)


def split_files(folder: Path, split: str, subset: str | None = None) -> list[Path]:
    """The files of one split (and subset) in a hub snapshot (`data/train-*.parquet`, `train.jsonl`,
    `<subset>/train-*.parquet`); all of them if no file is named after a split."""
    from openrecipe.data.containers import row_files

    files = row_files(folder)
    if subset is not None:
        files = [file for file in files if subset in file.relative_to(folder).parts[:-1]]
        if not files:
            raise DataError(f"no files of subset {subset!r} in the cached dataset", where=str(folder))
    if not files:
        raise DataError("the cached dataset has no data files (.parquet, .jsonl, .json, .arrow)", where=str(folder))
    pattern = re.compile(rf"(^|[/_.-]){re.escape(split)}([/_.-]|$)")
    named = [file for file in files if pattern.search(file.relative_to(folder).as_posix())]
    return named or files
