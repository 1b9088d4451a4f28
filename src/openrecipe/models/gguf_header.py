"""Bounds-checked reading of a GGUF header, before any library allocates memory from its counts.

Why by hand: gguf's `GGUFReader` and llama.cpp trust the counts in the header; a 52-byte file that claims
2^40 array items makes them allocate until the machine runs out of memory. Here every count and length is
checked against the bytes actually left in the file before it is used, so a hostile file fails in
microseconds with a user error, and a valid one is walked without reading tensor data.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from openrecipe.errors import OpenRecipeError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_KEY_BYTES = 65_535

# value type id -> (struct format, size); strings (8) and arrays (9) are variable-sized
_SCALARS = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
_MIN_KV_BYTES = 8 + 4 + 1  # key length, value type, smallest value
_MIN_TENSOR_BYTES = 8 + 4 + 8 + 4 + 8  # name length, n_dims, one dim, type, offset


class CorruptGGUF(Exception):
    """Internal signal: the header breaks the format; turned into a user error naming the file."""


class NotGGUF(Exception):
    """Internal signal: the file does not start with the GGUF magic bytes."""


@dataclass
class GGUFHeader:
    """What the header says: version, metadata (arrays summarized as (type, count)), tensors."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)  # name -> (type, shape)
    data_offset: int = 0
    file_size: int = 0

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None


class _Reader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size
        self.position = 0

    @property
    def remaining(self) -> int:
        return self.size - self.position

    def take(self, count: int, what: str) -> bytes:
        if count < 0 or count > self.remaining:
            raise CorruptGGUF(f"{what} needs {count} bytes at offset {self.position}, the file has {self.remaining}")
        data = self.handle.read(count)
        if len(data) != count:
            raise CorruptGGUF(f"the file ended while reading {what}")
        self.position += count
        return data

    def skip(self, count: int, what: str) -> None:
        if count < 0 or count > self.remaining:
            raise CorruptGGUF(f"{what} needs {count} bytes at offset {self.position}, the file has {self.remaining}")
        self.handle.seek(count, os.SEEK_CUR)
        self.position += count

    def unpack(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def count(self, what: str, minimum_item_bytes: int) -> int:
        """A count from the file, refused when that many items cannot fit in the bytes that are left."""
        number = self.unpack("<Q", what)
        if number * minimum_item_bytes > self.remaining:
            raise CorruptGGUF(
                f"{what} is {number}, but only {self.remaining} bytes are left (at least {minimum_item_bytes} each)"
            )
        return number

    def string(self, what: str, *, keep: bool = True, limit: int | None = None) -> str | None:
        length = self.unpack("<Q", f"length of {what}")
        if limit is not None and length > limit:
            raise CorruptGGUF(f"{what} is {length} bytes long (at most {limit})")
        if not keep:
            self.skip(length, what)
            return None
        raw = self.take(length, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptGGUF(f"{what} is not valid UTF-8") from None


def _value(reader: _Reader, value_type: int, key: str) -> Any:
    if value_type in _SCALARS:
        fmt, _size = _SCALARS[value_type]
        return reader.unpack(fmt, f"value of {key}")
    if value_type == _STRING:
        return reader.string(f"value of {key}")
    if value_type == _ARRAY:
        item_type = reader.unpack("<I", f"item type of {key}")
        if item_type == _ARRAY:
            raise CorruptGGUF(f"{key} is an array of arrays, which GGUF readers do not support")
        if item_type == _STRING:
            number = reader.count(f"item count of {key}", 8)
            for _ in range(number):
                reader.string(f"an item of {key}", keep=False)
            return ("string", number)
        if item_type not in _SCALARS:
            raise CorruptGGUF(f"{key} has unknown item type {item_type}")
        item_size = _SCALARS[item_type][1]
        number = reader.count(f"item count of {key}", item_size)
        reader.skip(number * item_size, f"items of {key}")
        return (_SCALARS[item_type][0], number)
    raise CorruptGGUF(f"{key} has unknown value type {value_type}")


def _tensor_bytes(type_id: int, shape: tuple[int, ...], name: str) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(type_id)]
    except (ValueError, KeyError):
        raise CorruptGGUF(f"tensor {name} has unknown type {type_id}") from None
    if shape[0] % block_size:
        raise CorruptGGUF(f"tensor {name}: row length {shape[0]} is not a multiple of its block size {block_size}")
    elements = 1
    for dim in shape:
        elements *= dim
    return elements // block_size * type_size


def _parse(reader: _Reader) -> GGUFHeader:
    if reader.size < len(GGUF_MAGIC) or reader.take(len(GGUF_MAGIC), "magic") != GGUF_MAGIC:
        raise NotGGUF
    version = reader.unpack("<I", "version")
    if version not in SUPPORTED_VERSIONS:
        raise CorruptGGUF(f"GGUF version {version} is not supported (only {SUPPORTED_VERSIONS})")
    num_tensors = reader.unpack("<Q", "tensor count")
    num_metadata = reader.count("metadata count", _MIN_KV_BYTES)
    if num_tensors * _MIN_TENSOR_BYTES > reader.remaining:
        raise CorruptGGUF(f"tensor count is {num_tensors}, more than the {reader.remaining} bytes left can describe")
    header = GGUFHeader(version=version, file_size=reader.size)
    for _ in range(num_metadata):
        key = reader.string("a metadata key", limit=MAX_KEY_BYTES)
        assert key is not None
        if key in header.metadata:
            raise CorruptGGUF(f"metadata key {key!r} appears twice")
        header.metadata[key] = _value(reader, reader.unpack("<I", f"value type of {key}"), key)
    if num_tensors * _MIN_TENSOR_BYTES > reader.remaining:
        raise CorruptGGUF(f"tensor count is {num_tensors}, more than the {reader.remaining} bytes left can describe")
    extents = []
    for _ in range(num_tensors):
        name = reader.string("a tensor name", limit=MAX_KEY_BYTES)
        assert name is not None
        num_dims = reader.unpack("<I", f"dimension count of {name}")
        if not 1 <= num_dims <= MAX_DIMS:
            raise CorruptGGUF(f"tensor {name} has {num_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(reader.unpack("<Q", f"a dimension of {name}") for _ in range(num_dims))
        if any(dim == 0 for dim in shape):
            raise CorruptGGUF(f"tensor {name} has an empty dimension {shape}")
        type_id = reader.unpack("<I", f"type of {name}")
        offset = reader.unpack("<Q", f"data offset of {name}")
        if name in header.tensors:
            raise CorruptGGUF(f"tensor {name} appears twice")
        header.tensors[name] = (type_id, shape)
        extents.append((name, offset, _tensor_bytes(type_id, shape, name)))
    alignment = header.metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise CorruptGGUF(f"general.alignment is {alignment!r}, not a power of two")
    header.data_offset = -(-reader.position // alignment) * alignment
    available = reader.size - header.data_offset
    for name, offset, num_bytes in extents:
        if offset % alignment or offset + num_bytes > available:
            raise CorruptGGUF(
                f"tensor {name} spans bytes {offset}..{offset + num_bytes} of the data section, "
                f"which has {max(available, 0)} bytes"
            )
    return header


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse and bounds-check a GGUF's header and tensor table; user errors for anything malformed."""
    path = Path(path)
    if not path.is_file():
        raise OpenRecipeError(f"GGUF file not found: {path}", fix="check the path")
    size = path.stat().st_size
    try:
        with open(path, "rb") as handle:
            return _parse(_Reader(handle, size))
    except NotGGUF:
        raise OpenRecipeError(
            f"{path} is not a GGUF file (it does not start with the GGUF magic bytes)",
            fix="pass a .gguf model file, or an HF model folder",
        ) from None
    except CorruptGGUF as error:
        raise OpenRecipeError(
            f"{path} is a corrupt or truncated GGUF file ({error})", fix="re-download or re-export it"
        ) from None


def check_gguf(path: Path) -> GGUFHeader:
    """Refuse a file that is not a sound GGUF, before transformers, gguf or llama.cpp open it."""
    return read_gguf_header(path)
