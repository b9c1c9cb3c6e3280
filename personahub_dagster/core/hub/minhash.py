"""MinHash signatures, LSH band keys and earliest-wins near-duplicate marking, compiled with numba.

Why not a MinHash library: rensa computes a 100k-persona signature matrix in ~0.06 s, but exports it
only as Python lists (~1.1 s per 100k), and the hub keeps every kept persona's signature for later
partitions — so the export, not the hashing, was the MinHash stage's cost. The kernels here write
straight into numpy arrays (`benchmarks/dedup_minhash.py` compares them with datasketch and rensa).

Everything that reaches a saved hub state is defined here, not by a library version: tokens are
hashed with FNV-1a (64 bit) over their UTF-8 bytes and a splitmix64 finalizer, permutation ``p`` is
the multiply-add-shift hash ``(a_p·x + b_p) >> 32`` with ``a_p`` (odd) and ``b_p`` drawn from
splitmix64 of the seed, and band keys mix the band's rows with fixed multipliers. A polars or numpy
upgrade therefore never makes stored signatures disagree with new ones (:data:`ALGORITHM` is part of
the state's identity, so a change here rebuilds old states instead of silently missing duplicates).
"""

from __future__ import annotations

import numba
import numpy as np
import polars as pl

ALGORITHM = "fnv1a64-splitmix64/multiply-add-shift/v1"
TOKEN_PATTERN = r"[\w']+"  # Unicode word characters (and apostrophes), after lower-casing
_MASK64 = (1 << 64) - 1
_EMPTY = np.uint32(0xFFFFFFFF)


def tokenize(texts: list[str]) -> list[list[str]]:
    """Word 1-grams of each text, as Python lists (for inspection and for other MinHash libraries;
    the pipeline hashes the same tokens without building these lists)."""
    if not texts:
        return []
    return _words(texts).to_list()


def _words(texts: list[str]) -> pl.Series:
    return pl.Series(texts, dtype=pl.Utf8).str.to_lowercase().str.extract_all(TOKEN_PATTERN)


def _splitmix64(state: int, count: int) -> np.ndarray:
    """``count`` values of the splitmix64 sequence from ``state`` (plain Python: stable forever)."""
    out = []
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out.append(z ^ (z >> 31))
    return np.array(out, dtype=np.uint64)


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``(a, b)`` parameters of the ``num_perm`` hash functions (``a`` odd)."""
    values = _splitmix64(seed, 2 * num_perm)
    return values[:num_perm] | np.uint64(1), values[num_perm:]


_BAND_MULTIPLIERS = _splitmix64(0x5EED, 128) | np.uint64(1)


@numba.njit(cache=True, nogil=True)
def _signature_kernel(data, starts, lengths, doc_offsets, a, b, seed, out):
    num_perm = a.shape[0]
    for d in range(doc_offsets.shape[0] - 1):
        row = out[d]
        for p in range(num_perm):
            row[p] = 0xFFFFFFFF
        for t in range(doc_offsets[d], doc_offsets[d + 1]):
            h = np.uint64(0xCBF29CE484222325) ^ seed
            for k in range(starts[t], starts[t] + lengths[t]):
                h = (h ^ np.uint64(data[k])) * np.uint64(0x100000001B3)
            h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(31))
            for p in range(num_perm):
                v = np.uint32((a[p] * h + b[p]) >> np.uint64(32))
                if v < row[p]:
                    row[p] = v


def signatures(texts: list[str], num_perm: int = 128, seed: int = 42, block: int = 100_000) -> np.ndarray:
    """MinHash signatures of the texts' word sets: a ``(len(texts), num_perm)`` uint32 matrix.

    A text without a single word gets the all-``0xFFFFFFFF`` row (see :func:`has_words`). The tokens
    are never materialized as Python strings: polars extracts them, their UTF-8 bytes are joined into
    one buffer, and the kernel hashes them in place.
    """
    a, b = permutations(num_perm, seed)
    out = np.empty((len(texts), num_perm), np.uint32)
    for start in range(0, len(texts), block):
        words = _words(texts[start : start + block])
        per_doc = words.list.len().fill_null(0).to_numpy().astype(np.int64)
        tokens = words.explode().drop_nulls()
        lengths = tokens.str.len_bytes().to_numpy().astype(np.int64)
        joined = tokens.str.join("").item() if len(tokens) else ""
        data = np.frombuffer(joined.encode("utf-8"), np.uint8)
        starts = np.zeros(len(lengths), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        doc_offsets = np.zeros(len(per_doc) + 1, np.int64)
        np.cumsum(per_doc, out=doc_offsets[1:])
        _signature_kernel(
            data, starts, lengths, doc_offsets, a, b, np.uint64(seed), out[start : start + len(per_doc)]
        )
    return out


def has_words(sigs: np.ndarray) -> np.ndarray:
    """Rows that come from a text with at least one word (an empty set has no Jaccard similarity,
    and every empty text would otherwise look like a copy of every other)."""
    return (sigs != _EMPTY).any(axis=1)


def band_keys(sigs: np.ndarray, rows_per_band: int) -> np.ndarray:
    """One uint64 key per LSH band: a multiply-add hash of the band's signature rows, with the band
    number mixed in so that all bands can share one join column. Collisions only add candidates,
    and every candidate is verified."""
    n, num_perm = sigs.shape
    keys = np.empty((n, num_perm // rows_per_band), np.uint64)
    _band_kernel(np.ascontiguousarray(sigs), rows_per_band, _BAND_MULTIPLIERS, keys)
    return keys


@numba.njit(cache=True, nogil=True)
def _band_kernel(sigs, rows_per_band, multipliers, out):
    for i in range(out.shape[0]):
        for band in range(out.shape[1]):
            key = np.uint64(band) * np.uint64(0x9E3779B97F4A7C15)
            acc = np.uint64(0)
            for r in range(rows_per_band):
                acc += np.uint64(sigs[i, band * rows_per_band + r]) * multipliers[r]
            out[i, band] = acc ^ key


# Band key → rows, as an open-addressing table whose slots hold (key, head + 1) — key and list head in
# one row, one cache miss per probe, 0 meaning empty — and linked lists of rows in two entry arrays.


@numba.njit(cache=True, nogil=True, inline="always")
def _slot(table, key):
    mask = np.uint64(table.shape[0] - 1)
    s = key & mask
    while table[s, 1] != 0 and table[s, 0] != key:
        s = (s + np.uint64(1)) & mask
    return s


@numba.njit(cache=True, nogil=True)
def _new_table(capacity):
    size = 1
    while size < 2 * capacity + 1:
        size *= 2
    return np.zeros((size, 2), np.uint64), np.empty(capacity, np.int64), np.empty(capacity, np.int64)


@numba.njit(cache=True, nogil=True, inline="always")
def _insert(table, entry_row, entry_next, entries, key, row):
    s = _slot(table, key)
    table[s, 0] = key
    entry_row[entries] = row
    entry_next[entries] = np.int64(table[s, 1]) - 1
    table[s, 1] = np.uint64(entries + 1)
    return entries + 1


@numba.njit(cache=True, nogil=True, inline="always")
def _same(a, i, b, j):
    same = 0
    for p in range(a.shape[1]):
        if a[i, p] == b[j, p]:
            same += 1
    return same / a.shape[1]


@numba.njit(cache=True, nogil=True)
def _earliest_wins_kernel(bands, sigs, eligible, threshold, dup_of, sim):
    n, num_bands = bands.shape
    table, entry_row, entry_next = _new_table(n * num_bands)
    last_seen = np.full(n, -1, np.int64)
    entries = 0
    for i in range(n):
        if not eligible[i]:
            continue
        best, best_j = -1.0, -1
        for band in range(num_bands):
            e = np.int64(table[_slot(table, bands[i, band]), 1]) - 1
            while e >= 0:
                j = entry_row[e]
                if last_seen[j] != i:
                    last_seen[j] = i
                    value = _same(sigs, i, sigs, j)
                    if value > best or (value == best and j < best_j):
                        best, best_j = value, j
                e = entry_next[e]
        if best_j >= 0 and best >= threshold:
            dup_of[i], sim[i] = best_j, best
            continue
        for band in range(num_bands):
            entries = _insert(table, entry_row, entry_next, entries, bands[i, band], i)


def earliest_wins(
    sigs: np.ndarray, rows_per_band: int, threshold: float, eligible: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy near-duplicate marking in row order: a row is a duplicate when a *kept* earlier row shares
    an LSH band with it and their estimated Jaccard is ≥ ``threshold``; otherwise it is kept.

    Returns ``(dup_of, similarity)``: the index of the most similar kept row (ties: the earliest) or -1,
    and that similarity. Only kept rows are indexed, so a thousand copies of one text cost a thousand
    look-ups, not a million comparisons. Rows where ``eligible`` is False are neither marked nor kept.
    """
    n = len(sigs)
    ok = has_words(sigs) if eligible is None else eligible & has_words(sigs)
    dup_of = np.full(n, -1, np.int64)
    sim = np.zeros(n, np.float64)
    if n:
        _earliest_wins_kernel(band_keys(sigs, rows_per_band), sigs, ok, float(threshold), dup_of, sim)
    return dup_of, sim


@numba.njit(cache=True, nogil=True)
def _index_rows(bands, eligible):
    n, num_bands = bands.shape
    table, entry_row, entry_next = _new_table(n * num_bands)
    entries = 0
    for i in range(n):
        if eligible[i]:
            for band in range(num_bands):
                entries = _insert(table, entry_row, entry_next, entries, bands[i, band], i)
    return table, entry_row, entry_next


@numba.njit(cache=True, nogil=True)
def _scan_kernel(table, entry_row, entry_next, sigs, hub_bands, hub_sigs, offset, last_hub, best, best_j):

    for h in range(hub_bands.shape[0]):
        for band in range(hub_bands.shape[1]):
            e = np.int64(table[_slot(table, hub_bands[h, band]), 1]) - 1
            while e >= 0:
                i = entry_row[e]
                if last_hub[i] != offset + h:  # a hub row sharing several bands is compared once
                    last_hub[i] = offset + h
                    value = _same(sigs, i, hub_sigs, h)
                    if value > best[i]:  # hub rows come in order: the first of equals stays
                        best[i], best_j[i] = value, offset + h
                e = entry_next[e]


def best_in_hub(
    sigs: np.ndarray,
    rows_per_band: int,
    hub_bands: list[np.ndarray],
    hub_sigs: list[np.ndarray],
    eligible: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``sigs``: the most similar hub row among those sharing an LSH band with it
    (ties: the earliest), as ``(hub index or -1, estimated Jaccard)``.

    The hub is given as aligned blocks of band keys and signatures (memory-mapped chunks work). The
    batch's band keys go into a small table and the hub's keys stream past it once, in order: the
    cost is one sequential read of the hub's keys plus the candidate comparisons — nothing of the
    hub is loaded whole, joined or indexed.
    """
    n = len(sigs)
    ok = has_words(sigs) if eligible is None else eligible & has_words(sigs)
    best = np.full(n, -1.0, np.float64)
    best_j = np.full(n, -1, np.int64)
    if not n or not ok.any():
        return best_j, np.maximum(best, 0.0)
    table, entry_row, entry_next = _index_rows(band_keys(sigs, rows_per_band), ok)
    last_hub = np.full(n, -1, np.int64)
    offset = 0
    for bands, block in zip(hub_bands, hub_sigs, strict=True):
        _scan_kernel(
            table,
            entry_row,
            entry_next,
            sigs,
            np.asarray(bands),
            np.asarray(block),
            offset,
            last_hub,
            best,
            best_j,
        )
        offset += len(bands)
    return best_j, np.maximum(best, 0.0)
