"""Continued-pretraining blocks written to disk as they are tokenized, read back memory-mapped.

`pack_texts` keeps every token in Python lists, fine for a few megabytes of text; a corpus of gigabytes
goes through `pack_texts_to_disk`, whose memory is one batch of documents however large the corpus is.
The blocks are the same: documents joined with EOS, cut into `block_size` pieces, positions restarting
at each document (a document cut by a block boundary restarts at 0 in the new block).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from openrecipe.data.tokenize import TokenizeStats
from openrecipe.utils.fs import atomic_write_json

IDS_FILE, POSITIONS_FILE, META_FILE = "input_ids.bin", "position_ids.bin", "blocks.json"


class PackedBlocks(Sequence[dict[str, list[int]]]):
    """Blocks of a `pack_texts_to_disk` folder; block i is a dict like `pack_texts` returns."""

    def __init__(self, folder: Path) -> None:
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        self.folder = folder
        self.block_size: int = meta["block_size"]
        self.fingerprint: str = meta["fingerprint"]
        self.stats = meta["stats"]
        self._count: int = meta["blocks"]
        tokens = self._count * self.block_size
        self._ids = np.memmap(folder / IDS_FILE, dtype=np.uint32, mode="r", shape=(tokens,)) if tokens else None
        position_type = np.dtype(meta["position_dtype"])
        self._positions = (
            np.memmap(folder / POSITIONS_FILE, dtype=position_type, mode="r", shape=(tokens,)) if tokens else None
        )

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if not -self._count <= index < self._count:
            raise IndexError(index)
        start = (index % self._count) * self.block_size
        ids = self._ids[start : start + self.block_size].tolist()
        positions = self._positions[start : start + self.block_size].tolist()
        return {"input_ids": ids, "labels": list(ids), "position_ids": positions}

    def token_counts(self) -> tuple[int, int]:
        """(tokens, trainable tokens) without reading a block: every token of a text block carries loss."""
        tokens = self._count * self.block_size
        return tokens, tokens

    def content_key(self) -> str:
        return self.fingerprint

    def take(self, indices: np.ndarray) -> BlockSubset:
        return BlockSubset(self, indices)


class BlockSubset(Sequence[dict[str, list[int]]]):
    """Some blocks of a `PackedBlocks`, by index (a train or held-out split), read only when asked for."""

    def __init__(self, blocks: PackedBlocks, indices: np.ndarray) -> None:
        self.blocks = blocks
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self.blocks[int(i)] for i in self.indices[index]]
        return self.blocks[int(self.indices[index])]

    def token_counts(self) -> tuple[int, int]:
        tokens = len(self.indices) * self.blocks.block_size
        return tokens, tokens

    def content_key(self) -> str:
        digest = xxhash.xxh3_128(self.blocks.fingerprint.encode())
        digest.update(self.indices.tobytes())
        return digest.hexdigest()


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    iterator = iter(texts)
    while batch := list(islice(iterator, size)):
        yield batch


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens. A fast tokenizer without truncation or padding set is
    called directly: the ids are the same, without building a `BatchEncoding` (a quarter of the time)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.truncation is not None or backend.padding is not None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [encoding.ids for encoding in backend.encode_batch(texts, add_special_tokens=False)]


def pack_texts_to_disk(
    tokenizer, texts: Iterable[str], block_size: int, folder: Path, *, batch_documents: int = 256
) -> tuple[PackedBlocks, TokenizeStats]:
    """Tokenize a stream of documents in batches and append complete blocks to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / META_FILE).unlink(missing_ok=True)  # written last: a folder without it is incomplete
    position_type = np.uint16 if block_size <= np.iinfo(np.uint16).max else np.uint32
    eos = tokenizer.eos_token_id
    stats = TokenizeStats()
    digest = xxhash.xxh3_128()
    pending_ids = np.zeros(0, dtype=np.uint32)
    pending_positions = np.zeros(0, dtype=np.int64)
    written = 0
    with open(folder / IDS_FILE, "wb") as ids_file, open(folder / POSITIONS_FILE, "wb") as positions_file:
        for batch in _batches(texts, batch_documents):
            stats.examples_in += len(batch)
            encoded = _encode(tokenizer, batch)
            ending = [eos] if eos is not None else []
            documents = [np.asarray(ids + ending, dtype=np.uint32) for ids in encoded]
            lengths = np.fromiter((len(d) for d in documents), dtype=np.int64, count=len(documents))
            flat = np.concatenate(documents) if documents else np.zeros(0, dtype=np.uint32)
            starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
            in_document = np.arange(len(flat), dtype=np.int64) - starts
            pending_ids = np.concatenate([pending_ids, flat])
            pending_positions = np.concatenate([pending_positions, in_document])
            complete = len(pending_ids) // block_size * block_size
            if complete:
                chunk_ids, chunk_positions = pending_ids[:complete], pending_positions[:complete]
                # A document straddling a block start restarts its positions there: min(position, offset in block).
                offsets = np.arange(complete, dtype=np.int64) % block_size
                fixed = np.minimum(chunk_positions, offsets).astype(position_type)
                ids_file.write(chunk_ids.tobytes())
                positions_file.write(fixed.tobytes())
                digest.update(chunk_ids.tobytes())
                digest.update(fixed.tobytes())
                written += complete
                pending_ids, pending_positions = pending_ids[complete:], pending_positions[complete:]
    if len(pending_ids):
        stats.dropped["tail_tokens"] = len(pending_ids)
    stats.examples_out = written // block_size
    stats.tokens = stats.trainable_tokens = written
    digest.update(str(block_size).encode())
    meta: dict[str, Any] = {
        "block_size": block_size,
        "blocks": written // block_size,
        "position_dtype": np.dtype(position_type).name,
        "fingerprint": digest.hexdigest(),
        "stats": stats.to_json(),
    }
    atomic_write_json(folder / META_FILE, meta)
    return PackedBlocks(folder), stats
