"""Near-duplicate detection that scales to corpora larger than memory allows for an LSH index.

Signatures are one-permutation MinHash (one hash per shingle, binned; empty bins densified by rotation):
datasketch's MinHash applies every permutation to every shingle, O(shingles x permutations), which is
too slow for gigabytes on a CPU; this is O(shingles) and vectorized. The band layout (b bands of r rows)
is datasketch's optimum for the threshold. Band keys are kept as compact arrays and grouped by sorting
once all documents are seen, so memory grows by `8 x bands` bytes a document, not by an index of dicts.
"""

from __future__ import annotations

from array import array
from functools import cache

import numpy as np
import xxhash

_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.iinfo(np.uint64).max


@cache
def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) minimizing false positives + negatives at `threshold` (datasketch's choice)."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return lsh.b, lsh.r


def shingle_hashes(text: str, size: int) -> np.ndarray:
    """A 32-bit hash (in uint64) of every `size`-character window of `text`."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < size:
        codes = np.pad(codes, (0, size - len(codes)))
    windows = np.lib.stride_tricks.sliding_window_view(codes, size)
    hashes = windows[:, 0].copy()
    for column in range(1, size):
        hashes = hashes * _PRIME + windows[:, column]
    return (hashes * _MIX) >> np.uint64(32)


def signature(text: str, num_perm: int, shingle_size: int) -> np.ndarray:
    """One-permutation MinHash: the smallest hash in each of `num_perm` bins; empty bins borrow from the
    next filled bin to the right (rotation densification), offset by the distance so they stay distinct."""
    hashes = np.sort(shingle_hashes(text, shingle_size))
    bins = (hashes * np.uint64(num_perm)) >> np.uint64(32)
    first = np.ones(len(hashes), dtype=bool)
    np.not_equal(bins[1:], bins[:-1], out=first[1:])
    values = np.full(num_perm, _EMPTY, dtype=np.uint64)
    values[bins[first]] = hashes[first]
    filled = np.flatnonzero(values != _EMPTY)
    if len(filled) < num_perm:
        positions = np.arange(num_perm)
        nearest = np.searchsorted(filled, positions) % len(filled)
        distance = (filled[nearest] - positions) % num_perm
        values = values[filled[nearest]] + (distance.astype(np.uint64) << np.uint64(32))
    return values


class BandIndex:
    """Band keys of every document added, then one grouping pass: which earlier document each one matches."""

    def __init__(self, threshold: float, num_perm: int, shingle_size: int) -> None:
        self.bands, self.rows = band_layout(threshold, num_perm)
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._keys = array("Q")

    def add(self, text: str) -> None:
        values = signature(text, self.num_perm, self.shingle_size)[: self.bands * self.rows]
        for band in values.reshape(self.bands, self.rows):
            self._keys.append(xxhash.xxh3_64_intdigest(band.tobytes()))

    def __len__(self) -> int:
        return len(self._keys) // self.bands

    def first_matches(self, include: np.ndarray | None = None) -> np.ndarray:
        """For each document, the lowest-numbered earlier document sharing any band with it (itself if none).
        `include` masks documents out of the comparison (e.g. exact duplicates already removed)."""
        count = len(self)
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        keys = np.frombuffer(self._keys, dtype=np.uint64).reshape(count, self.bands)
        members = np.arange(count) if include is None else np.flatnonzero(include)
        best = np.arange(count)
        for band in range(self.bands):
            column = keys[members, band]
            order = np.argsort(column, kind="stable")
            ordered = column[order]
            starts = np.ones(len(order), dtype=bool)
            np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
            group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
            first_member = members[order[group_start]]
            documents = members[order]
            best[documents] = np.minimum(best[documents], first_member)
        return best
