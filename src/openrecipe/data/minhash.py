"""Near-duplicate detection that scales to corpora larger than memory allows for an LSH index.

Signatures are one-permutation MinHash (one hash per shingle, binned; empty bins densified):
datasketch's MinHash applies every permutation to every shingle, O(shingles x permutations), which is
too slow for gigabytes on a CPU; this is O(shingles) and vectorized. The band layout (b bands of r rows)
is datasketch's optimum for the threshold, leaning to recall. Band keys are kept as compact arrays and
grouped by sorting once all documents are seen, so memory grows by `16 x bands` bytes a document, not by
an index of dicts; full signatures wait on disk to verify each candidate pair.
"""

from __future__ import annotations

import os
from array import array
from functools import cache
from pathlib import Path

import numpy as np
import xxhash

_PRIME = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_EMPTY = np.iinfo(np.uint64).max


@cache
def band_layout(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band): datasketch's optimum at `threshold`, weighted towards recall (0.1/0.9), since
    every candidate is then verified against the full signatures, which removes the false positives."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.1, 0.9))
    return lsh.b, lsh.r


def shingle_hashes(text: str, size: int) -> np.ndarray:
    """A 32-bit hash (in uint64) of every `size`-character window of `text`."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) < size:
        codes = np.pad(codes, (0, size - len(codes)))
    count = len(codes) - size + 1
    hashes = codes[:count].copy()
    for offset in range(1, size):
        hashes *= _PRIME
        hashes += codes[offset : offset + count]
    hashes *= _MIX
    return hashes >> np.uint64(32)


@cache
def _borrow_table(num_perm: int, attempts: int = 64) -> np.ndarray:
    """For each bin, a fixed pseudo-random sequence of bins to borrow from when it is empty."""
    return np.random.default_rng(0x5EED).integers(0, num_perm, size=(num_perm, attempts))


def signature(text: str, num_perm: int, shingle_size: int) -> np.ndarray:
    """One-permutation MinHash: the smallest hash in each of `num_perm` bins. Short texts leave bins empty;
    each borrows the value of the first filled bin along its own fixed random sequence (optimal
    densification: borrowing from a neighbour instead makes short, unrelated texts collide in whole
    bands), tagged with the attempt number so a borrowed value never equals an original."""
    hashes = np.sort(shingle_hashes(text, shingle_size))
    bins = (hashes * np.uint64(num_perm)) >> np.uint64(32)
    first = np.ones(len(hashes), dtype=bool)
    np.not_equal(bins[1:], bins[:-1], out=first[1:])
    values = np.full(num_perm, _EMPTY, dtype=np.uint64)
    values[bins[first]] = hashes[first]
    filled = values != _EMPTY
    if filled.all():
        return values
    table = _borrow_table(num_perm)
    hits = filled[table]
    attempt = hits.argmax(axis=1)
    rows = np.arange(num_perm)
    found = hits[rows, attempt]
    out = values.copy()
    borrow = ~filled & found
    out[borrow] = values[table[rows, attempt][borrow]] + (
        (attempt[borrow].astype(np.uint64) + np.uint64(1)) << np.uint64(40)
    )
    rest = np.flatnonzero(~filled & ~found)
    if len(rest):  # nearly every bin empty: the next filled bin to the right
        present = np.flatnonzero(filled)
        nearest = present[np.searchsorted(present, rest) % len(present)]
        out[rest] = values[nearest] + (((nearest - rest) % num_perm).astype(np.uint64) << np.uint64(32))
    return out


class BandIndex:
    """Band keys (and full signatures, on disk when a path is given) of every document added; then one
    grouping pass finds, per band, the first document with the same key, and candidates are verified."""

    def __init__(self, threshold: float, num_perm: int, shingle_size: int, signatures: Path | None = None) -> None:
        self.threshold = threshold
        self.bands, self.rows = band_layout(threshold, num_perm)
        self.num_perm = num_perm
        self.shingle_size = shingle_size
        self._keys = array("Q")
        self._signatures_path = signatures
        self._signatures = array("Q") if signatures is None else open(signatures, "wb")  # noqa: SIM115

    def add(self, text: str) -> None:
        values = signature(text, self.num_perm, self.shingle_size)
        for band in values[: self.bands * self.rows].reshape(self.bands, self.rows):
            self._keys.append(xxhash.xxh3_64_intdigest(band.tobytes()))
        if isinstance(self._signatures, array):
            self._signatures.frombytes(values.tobytes())
        else:
            self._signatures.write(values.tobytes())

    def __len__(self) -> int:
        return len(self._keys) // self.bands

    def _first_per_band(self, members: np.ndarray) -> np.ndarray:
        """(documents, bands): the lowest-numbered member with the same band key (itself if none earlier)."""
        count = len(self)
        keys = np.frombuffer(self._keys, dtype=np.uint64).reshape(count, self.bands)
        firsts = np.tile(np.arange(count)[:, None], (1, self.bands))
        for band in range(self.bands):
            column = keys[members, band]
            order = np.argsort(column, kind="stable")
            ordered = column[order]
            starts = np.ones(len(order), dtype=bool)
            np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
            group_start = np.maximum.accumulate(np.where(starts, np.arange(len(order)), 0))
            firsts[members[order], band] = members[order[group_start]]
        return firsts

    def first_matches(self, include: np.ndarray | None = None) -> np.ndarray:
        """For each document, the lowest-numbered earlier document whose signature agrees with its own on at
        least `threshold` of the positions, among those sharing a band with it (itself if none).
        `include` masks documents out of the comparison (e.g. exact duplicates already removed)."""
        count = len(self)
        best = np.arange(count)
        if count == 0:
            return best
        members = np.arange(count) if include is None else np.flatnonzero(include)
        firsts = self._first_per_band(members)
        suspects = np.flatnonzero((firsts < best[:, None]).any(axis=1))
        if not len(suspects):
            return best
        reader = self._open_signatures()
        try:
            for document in suspects.tolist():
                own = reader(document)
                for candidate in sorted(set(firsts[document][firsts[document] < document].tolist())):
                    if float(np.mean(reader(candidate) == own)) >= self.threshold:
                        best[document] = candidate
                        break
        finally:
            if not isinstance(self._signatures, array):
                reader.close()  # type: ignore[attr-defined]
        return best

    def _open_signatures(self):
        size = self.num_perm * 8
        if isinstance(self._signatures, array):
            values = np.frombuffer(self._signatures, dtype=np.uint64)
            return lambda index: values[index * self.num_perm : (index + 1) * self.num_perm]
        self._signatures.close()
        handle = open(self._signatures_path, "rb")  # noqa: SIM115

        class Reader:
            def __call__(self, index: int) -> np.ndarray:
                return np.frombuffer(os.pread(handle.fileno(), size, index * size), dtype=np.uint64)

            def close(self) -> None:
                handle.close()

        return Reader()

    def close(self) -> None:
        if not isinstance(self._signatures, array):
            self._signatures.close()
            self._signatures_path.unlink(missing_ok=True)
