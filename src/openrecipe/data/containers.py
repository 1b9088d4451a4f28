"""Rows out of the file types datasets come in: JSON/JSONL, Parquet, Arrow (`save_to_disk` folders and
cache files), folders of such files. Every reader streams: nothing here holds a whole file's rows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openrecipe.data.jsonio import iter_json_rows
from openrecipe.data.validation import DataError, Rejections

ROW_FILE_SUFFIXES = (".jsonl", ".json", ".parquet", ".arrow")
BATCH_ROWS = 1024


def is_saved_dataset(path: Path) -> bool:
    """A folder written by `datasets`' `save_to_disk` (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def row_files(path: Path) -> list[Path]:
    """Data files inside a folder (hub snapshots, sharded exports), sorted for a stable order."""
    return sorted(
        file
        for file in path.rglob("*")
        if file.is_file() and file.suffix.lower() in ROW_FILE_SUFFIXES and not _is_metadata(file, path)
    )


def _is_metadata(file: Path, root: Path) -> bool:
    relative = file.relative_to(root)
    hidden = any(part.startswith(".") for part in relative.parts)
    return hidden or file.name in ("dataset_info.json", "state.json", "dataset_dict.json", "dataset_infos.json")


def is_row_container(path: Path) -> bool:
    if path.is_dir():
        return is_saved_dataset(path) or bool(row_files(path))
    return path.suffix.lower() in ROW_FILE_SUFFIXES


def iter_rows(path: Path, rejections: Rejections, *, split: str = "train") -> Iterator[tuple[str, Any]]:
    """(where, row) pairs from any row container; `where` is FILE:LINE or FILE:row N."""
    if is_saved_dataset(path):
        yield from _iter_saved_dataset(path, rejections, split)
    elif path.is_dir():
        for file in row_files(path):
            yield from iter_rows(file, rejections, split=split)
    elif path.suffix.lower() == ".parquet":
        yield from _iter_parquet(path, rejections)
    elif path.suffix.lower() == ".arrow":
        yield from _iter_arrow_file(path, rejections)
    else:
        yield from iter_json_rows(path, rejections)


def _batches_to_rows(where: str, batches, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            rejections.rows_seen += 1
            yield f"{where}:row {number}", row


def _iter_parquet(path: Path, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as parquet

    try:
        file = parquet.ParquetFile(path, memory_map=True)
    except Exception as error:
        raise DataError(f"cannot read as Parquet ({error})", where=str(path)) from None
    yield from _batches_to_rows(str(path), file.iter_batches(batch_size=BATCH_ROWS), rejections)


def _open_arrow(path: Path):
    import pyarrow as arrow

    source = arrow.memory_map(str(path))
    for opener in (arrow.ipc.open_stream, arrow.ipc.open_file):
        try:
            return opener(source)
        except arrow.ArrowInvalid:
            source.seek(0)
    raise DataError("cannot read as an Arrow file", where=str(path))


def _iter_arrow_file(path: Path, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    import pyarrow as arrow

    reader = _open_arrow(path)
    if isinstance(reader, arrow.ipc.RecordBatchFileReader):
        batches = (reader.get_batch(index) for index in range(reader.num_record_batches))
    else:
        batches = iter(reader)
    yield from _batches_to_rows(str(path), batches, rejections)


def saved_dataset_files(path: Path, split: str) -> list[Path]:
    """The memory-mappable Arrow files of a `save_to_disk` folder (one split of a DatasetDict)."""
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if split not in splits:
            raise DataError(
                f"no split {split!r} in this saved dataset; splits are: {', '.join(splits)}",
                where=str(path),
                fix="set `split:` in the data source",
            )
        path = path / split
    state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    return [path / item["filename"] for item in state.get("_data_files", [])]


def _iter_saved_dataset(path: Path, rejections: Rejections, split: str) -> Iterator[tuple[str, Any]]:
    files = saved_dataset_files(path, split)
    if not files:
        raise DataError("saved dataset has no data files", where=str(path))
    for file in files:
        yield from _iter_arrow_file(file, rejections)


def first_row(path: Path, split: str = "train") -> dict[str, Any] | None:
    """The first row of a Parquet/Arrow container, to detect its layout; JSON is handled by its own sniffing."""
    if is_saved_dataset(path):
        files = saved_dataset_files(path, split)
        return _first_arrow_row(files[0]) if files else None
    if path.is_dir():
        files = row_files(path)
        return first_row(files[0], split) if files else None
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as parquet

        try:
            batch = next(parquet.ParquetFile(path).iter_batches(batch_size=1), None)
        except Exception as error:
            raise DataError(f"cannot read as Parquet ({error})", where=str(path)) from None
        rows = batch.to_pylist() if batch is not None else []
        return rows[0] if rows else None
    if path.suffix.lower() == ".arrow":
        return _first_arrow_row(path)
    return None


def _first_arrow_row(path: Path) -> dict[str, Any] | None:
    for _, row in _iter_arrow_file(path, Rejections()):
        return row
    return None
