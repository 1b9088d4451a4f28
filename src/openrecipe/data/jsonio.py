"""Line-aware JSON/JSONL reading: every row keeps its line number for error messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from openrecipe.data.validation import DataError, Rejections


def read_text_strict(path: Path) -> str:
    """Whole file as text (BOM removed); non-UTF-8 bytes are reported with their line."""
    data = path.read_bytes()
    if not data.strip():
        raise DataError("file is empty", where=str(path), fix="add data, or remove the file from the recipe")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise _nul_error(f"{path}:{line}", data)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise DataError(
            "not UTF-8 text",
            where=f"{path}:{line}",
            fix="save the file as UTF-8 (e.g. 'Save as… UTF-8' in Excel)",
        ) from None


def _nul_error(where: str, data: bytes) -> DataError:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return DataError("is UTF-16 text", where=where, fix="save the file as UTF-8")
    return DataError("contains a NUL byte (binary data?)", where=where, fix="remove it, or save the file as UTF-8 text")


def _is_blank_file(path: Path) -> bool:
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 16):
            if chunk.strip():
                return False
    return True


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, raw bytes) of a file, streamed, BOM removed; empty files are an error."""
    if _is_blank_file(path):
        raise DataError("file is empty", where=str(path), fix="add data, or remove the file from the recipe")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise _nul_error(f"{path}:1", raw)
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            yield number, raw


def iter_text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 file; bad bytes are reported with their line."""
    for number, raw in iter_lines(path):
        if b"\x00" in raw:
            raise _nul_error(f"{path}:{number}", raw)
        try:
            yield number, raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise DataError("not UTF-8 text", where=f"{path}:{number}", fix="save the file as UTF-8") from None


def iter_jsonl(path: Path, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    """Yield (FILE:LINE, parsed object) for each non-blank line, reading one line at a time."""
    for number, raw in iter_lines(path):
        if not raw.strip():
            continue
        where = f"{path}:{number}"
        rejections.rows_seen += 1
        if b"\x00" in raw:
            rejections.reject(_nul_error(where, raw))
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            rejections.reject(DataError("not UTF-8 text", where=where, fix="save the file as UTF-8"))
            continue
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as error:
            rejections.reject(DataError(f"invalid JSON ({error.msg} at column {error.colno})", where=where))
        except RecursionError:
            rejections.reject(DataError("JSON nested too deeply", where=where))


def iter_json_array(path: Path, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    """Yield (FILE:LINE, element) for each element of a top-level JSON array."""
    text = read_text_strict(path)
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(f"invalid JSON ({error.msg} at column {error.colno})", where=f"{path}:{error.lineno}") from None
    except RecursionError:
        raise DataError("JSON nested too deeply", where=str(path)) from None
    if isinstance(parsed, dict):
        parsed, text = [parsed], None
    if not isinstance(parsed, list):
        raise DataError(f"expected a JSON array of rows, got {type(parsed).__name__}", where=f"{path}:1")
    lines = _element_lines(text, len(parsed)) if text is not None else [1]
    for line, element in zip(lines, parsed, strict=True):
        rejections.rows_seen += 1
        yield f"{path}:{line}", element


def _element_lines(text: str, count: int) -> list[int]:
    """Line where each element of a top-level array starts (a second pass with raw_decode)."""
    decoder = json.JSONDecoder()
    position = text.index("[") + 1
    lines: list[int] = []
    line, counted_to = 1, 0
    for _ in range(count):
        while text[position] in " \t\r\n,":
            position += 1
        line += text.count("\n", counted_to, position)
        counted_to = position
        lines.append(line)
        _, position = decoder.raw_decode(text, position)
    return lines


def iter_json_rows(path: Path, rejections: Rejections) -> Iterator[tuple[str, Any]]:
    """JSONL, or a JSON array, chosen by the first non-blank character."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"[") or (path.suffix == ".json" and not _looks_like_jsonl(path)):
        return iter_json_array(path, rejections)
    return iter_jsonl(path, rejections)


def _looks_like_jsonl(path: Path) -> bool:
    with open(path, "rb") as handle:
        lines = [line for line in (handle.readline() for _ in range(3)) if line.strip()]
    if len(lines) < 2:
        return False
    try:
        json.loads(lines[0])
        return True
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
