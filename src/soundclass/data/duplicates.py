"""Tie copies together so no split or fold can put a clip beside its copy.

A split is leak-proof only when every exact copy (same content hash) and every
near copy (same recording re-encoded, trimmed, resampled, gain-changed; see
:mod:`soundclass.data.fingerprint`) shares one group with the original: the
grouped splitters in :mod:`soundclass.data.splits` then keep them on one side.

:func:`tie_groups` merges groups with union-find over any number of key
columns::

    keys = [exact_duplicate_keys(hashes), near_duplicate_keys(pairs, n=len(items))]
    groups, n_tied = tie_groups(groups, keys)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from soundclass.errors import ParameterError

__all__ = ["tie_groups", "exact_duplicate_keys", "near_duplicate_keys", "duplicate_sets"]


class _UnionFind:
    """Disjoint sets over ``0 .. n-1`` with path halving and union by size."""

    def __init__(self, n: int):
        self.parent = np.arange(n)
        self.size = np.ones(n, dtype=np.int64)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return int(i)

    def union(self, i: int, j: int) -> bool:
        ri, rj = self.find(i), self.find(j)
        if ri == rj:
            return False
        if self.size[ri] < self.size[rj]:
            ri, rj = rj, ri
        self.parent[rj] = ri
        self.size[ri] += self.size[rj]
        return True


def _missing(value: Any) -> bool:
    """``None``, NaN and the empty string mean "no key"."""
    if value is None:
        return True
    if isinstance(value, str):
        return value == ""
    if isinstance(value, (float, np.floating)):
        return bool(np.isnan(value))
    return False


def _union_by_key(uf: _UnionFind, values: Sequence[Any]) -> int:
    """Union every pair of items sharing a non-missing value; return the unions made."""
    first: dict[Any, int] = {}
    merged = 0
    for i, value in enumerate(values):
        if _missing(value):
            continue
        j = first.setdefault(value, i)
        if j != i and uf.union(i, j):
            merged += 1
    return merged


def tie_groups(
    groups: Sequence[Any] | None, keys: Iterable[Sequence[Any]], *, n: int | None = None
) -> tuple[np.ndarray, int]:
    """Merge groups so that items sharing any key end up in one group.

    Parameters
    ----------
    groups : sequence [shape=(n,)] or None
        The existing group of each item (e.g. a speaker or recording id from
        ``--group-pattern``); ``None``/NaN/``''`` entries (or ``groups=None``)
        mean "no group", and such an item starts alone.
    keys : iterable of sequences [shape=(n,)]
        Key columns, e.g. a content hash per item and a near-duplicate cluster
        id per item; ``None``/NaN/``''`` entries are no key.  Two items sharing
        a value in any column, or sharing a group, are tied (transitively).
    n : int, optional
        Number of items; required when ``groups`` is ``None`` and there are no keys.

    Returns
    -------
    labels : np.ndarray of int64 [shape=(n,)]
        New group labels ``0 .. n_groups-1``, numbered in order of first appearance.
    n_tied : int
        How many merges the keys caused beyond the given groups: the number of
        groups the split would have had minus the number it has now.

    Examples
    --------
    >>> labels, n_tied = tie_groups(["a", "a", "b", None], [["h1", "h2", "h2", "h1"]])
    >>> labels.tolist(), n_tied
    ([0, 0, 0, 0], 2)
    """
    keys = [list(k) for k in keys]
    sizes = {len(k) for k in keys}
    if groups is not None:
        groups = list(groups)
        sizes.add(len(groups))
    if n is not None:
        sizes.add(int(n))
    if not sizes:
        raise ParameterError("tie_groups needs groups, keys or n to know the number of items")
    if len(sizes) > 1:
        raise ParameterError(f"groups and keys must all have the same length, got lengths {sorted(sizes)}")
    size = sizes.pop()
    uf = _UnionFind(size)
    if groups is not None:
        _union_by_key(uf, groups)
    n_tied = sum(_union_by_key(uf, column) for column in keys)
    roots = np.array([uf.find(i) for i in range(size)], dtype=np.int64)
    _, first_index, inverse = np.unique(roots, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))  # renumber by first appearance
    return order[inverse].astype(np.int64), int(n_tied)


def exact_duplicate_keys(hashes: Sequence[Any]) -> list[Any]:
    """A key column for :func:`tie_groups` from content hashes.

    Parameters
    ----------
    hashes : sequence of str or None [shape=(n,)]
        A content hash per item (scan's SHA-1, the feature cache's hash);
        ``None``/``''`` where unknown (e.g. unreadable files).

    Returns
    -------
    list [shape=(n,)]
        The hash where at least one other item has the same hash, else ``None``
        (so unique items carry no key and stay in their own group).
    """
    hashes = list(hashes)
    counts: dict[Any, int] = {}
    for h in hashes:
        if not _missing(h):
            counts[h] = counts.get(h, 0) + 1
    return [h if not _missing(h) and counts[h] > 1 else None for h in hashes]


def near_duplicate_keys(pairs: Iterable[Sequence[Any]], *, n: int) -> list[int | None]:
    """A key column for :func:`tie_groups` from near-duplicate pairs.

    Parameters
    ----------
    pairs : iterable of ``(i, j)`` or ``(i, j, score)``
        Index pairs, e.g. from :func:`soundclass.data.fingerprint.near_duplicate_pairs`.
    n : int
        Number of items.

    Returns
    -------
    list of int or None [shape=(n,)]
        A cluster id (connected component of the pair graph) for every item in
        some pair, ``None`` for the rest.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ParameterError(f"n={n!r} must be a non-negative integer")
    uf = _UnionFind(int(n))
    seen = np.zeros(int(n), dtype=bool)
    for pair in pairs:
        i, j = int(pair[0]), int(pair[1])
        if not (0 <= i < n and 0 <= j < n):
            raise ParameterError(f"pair ({i}, {j}) is out of range for n={n}")
        uf.union(i, j)
        seen[i] = seen[j] = True
    return [uf.find(i) if seen[i] else None for i in range(int(n))]


def duplicate_sets(keys: Sequence[Any]) -> list[list[int]]:
    """The indices sharing each non-missing key, sets of two or more, in order.

    Parameters
    ----------
    keys : sequence [shape=(n,)]
        A key column (see :func:`exact_duplicate_keys`, :func:`near_duplicate_keys`).

    Returns
    -------
    list of list of int
        One list of indices per key held by at least two items, for listing in
        reports (``near_duplicates.csv``).
    """
    sets: dict[Any, list[int]] = {}
    for i, k in enumerate(keys):
        if not _missing(k):
            sets.setdefault(k, []).append(i)
    return [members for members in sets.values() if len(members) > 1]
