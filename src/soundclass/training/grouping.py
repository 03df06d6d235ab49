"""Leak-proof split groups: tie exact and near duplicates before any split.

:func:`tie_duplicates` is what ``soundclass train`` does to its usable clips
before splitting, with or without ``--group-pattern``:

1. the SHA-256 of every file (:func:`soundclass.util.hashing.sha256_file`);
   byte-identical files share a key;
2. unless ``near_duplicates == 0``, fingerprints at 8 kHz
   (:func:`soundclass.data.near_duplicates.fingerprint_files`, cached in the
   feature cache folder by content hash) and the pairs scoring at least
   ``near_duplicates`` (:func:`soundclass.data.fingerprint.near_duplicate_pairs`);
3. :func:`soundclass.data.duplicates.tie_groups` merges the user's groups
   with both key columns, so every copy lands on the side of its original.

The result says how many clips were tied in how many duplicate sets; the
trainer warns with those counts and writes them to ``split.json``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from soundclass.data.duplicates import (
    duplicate_sets,
    exact_duplicate_keys,
    near_duplicate_keys,
    tie_groups,
)
from soundclass.data.near_duplicates import find_near_duplicates, fingerprint_files
from soundclass.data.splits import leakage_warning
from soundclass.util.hashing import sha256_file

__all__ = ["DuplicateTies", "tie_duplicates", "split_leakage", "split_notes"]


@dataclass(frozen=True)
class DuplicateTies:
    """The groups after tying copies, and what was tied.

    Attributes
    ----------
    groups : np.ndarray of int64 [shape=(n,)] or None
        Group label per clip; ``None`` when there were no user groups and
        nothing was tied (the split then stays a plain stratified one).
    hashes : list of str or None [shape=(n,)]
        SHA-256 per clip (``None``: unreadable).
    near_pairs : list of (i, j, score)
        Near-duplicate pairs found (empty when detection is off).
    threshold : float
        The near-duplicate similarity threshold (0: detection off).
    n_exact_sets, n_near_sets : int
        Sets of byte-identical clips, of near-duplicate clips.
    n_tied_clips, n_sets : int
        Clips in some duplicate set (exact or near, merged), and those sets.
    """

    groups: np.ndarray | None
    hashes: list[str | None]
    near_pairs: list[tuple[int, int, float]] = field(default_factory=list)
    threshold: float = 0.0
    n_exact_sets: int = 0
    n_near_sets: int = 0
    n_tied_clips: int = 0
    n_sets: int = 0

    def summary(self, paths: Sequence[str]) -> dict[str, Any]:
        """JSON-ready counts and the near-duplicate pairs by path (for ``split.json``)."""
        return {
            "tied_clips": self.n_tied_clips, "duplicate_sets": self.n_sets,
            "exact_duplicate_sets": self.n_exact_sets, "near_duplicate_sets": self.n_near_sets,
            "near_duplicate_threshold": self.threshold or None,
            "near_duplicates": [{"path_a": paths[i], "path_b": paths[j], "score": round(float(s), 4)}
                                for i, j, s in self.near_pairs],
        }

    def message(self) -> str | None:
        """``"tied N clips in M duplicate sets ..."``, or ``None`` when nothing was tied."""
        if not self.n_tied_clips:
            return None
        near = (f", near duplicates at similarity >= {self.threshold:g}" if self.threshold
                else "; near-duplicate detection was off")
        return (f"tied {self.n_tied_clips} clips in {self.n_sets} duplicate sets so copies stay on one "
                f"side of the split ({self.n_exact_sets} sets of byte-identical files, "
                f"{self.n_near_sets} of near duplicates{near})")


def _hash(path: str) -> str | None:
    try:
        return sha256_file(path)
    except OSError:
        return None


_LAST_PAIRS: dict[tuple, list[tuple[int, int, float]]] = {}


def _near_pairs(paths: list[str], hashes: list[str], threshold: float, **pool: Any) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs of these clips; the last answer is kept, since ``--model auto``
    prepares the same clips once per candidate and the pair search is the slow part."""
    # content, not names (a renamed copy is the same question); a new cache folder gets its fingerprints
    key = (tuple(hashes), threshold, None if pool.get("cache_dir") is None else os.fspath(pool["cache_dir"]))
    if key not in _LAST_PAIRS:
        fps = fingerprint_files(paths, hashes=hashes, **pool)
        _LAST_PAIRS.clear()
        _LAST_PAIRS[key] = find_near_duplicates(fps, threshold=threshold, hashes=hashes)
    return list(_LAST_PAIRS[key])


def tie_duplicates(
    paths: Sequence[str | os.PathLike],
    *,
    groups: Sequence[Any] | None = None,
    near_duplicates: float = 0.0,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: Any = None,
) -> DuplicateTies:
    """Tie exact and near duplicates into shared groups.

    Parameters
    ----------
    paths : sequence of path [shape=(n,)]
        The usable clips, in split order.
    groups : sequence [shape=(n,)], optional
        User groups (``--group-pattern``); ``None`` entries start alone.
    near_duplicates : float
        Similarity threshold of near duplicates (e.g.
        :data:`soundclass.data.fingerprint.DEFAULT_THRESHOLD`); ``0`` turns
        near-duplicate detection off (exact copies are always tied).
    cache_dir : path, optional
        Feature cache folder, where fingerprints are cached by content hash.
    n_jobs, executor
        For fingerprinting (:func:`soundclass.util.pool.run_chunked`).

    Returns
    -------
    DuplicateTies
    """
    paths = [os.fspath(p) for p in paths]
    n = len(paths)
    hashes = [_hash(p) for p in paths]
    exact = exact_duplicate_keys(hashes)
    pairs: list[tuple[int, int, float]] = []
    if near_duplicates and n > 1:
        pairs = _near_pairs(paths, hashes, float(near_duplicates), cache_dir=cache_dir, n_jobs=n_jobs,
                            executor=executor)
    near = near_duplicate_keys(pairs, n=n)
    merged, _ = tie_groups(None, [exact, near], n=n)
    sizes = np.bincount(merged, minlength=int(merged.max()) + 1 if n else 0)
    tied = sizes[merged] > 1 if n else np.zeros(0, dtype=bool)
    have_user = groups is not None and any(g is not None for g in groups)
    if have_user and not tied.any():
        out = np.asarray(groups, dtype=object)  # nothing tied: the user's groups, as before
    elif have_user:
        out, _ = tie_groups([None if g is None else f"g:{g}" for g in groups], [exact, near])
    elif tied.any():
        out = merged
    else:
        out = None
    return DuplicateTies(
        groups=out, hashes=hashes, near_pairs=pairs, threshold=float(near_duplicates),
        n_exact_sets=len(duplicate_sets(exact)), n_near_sets=len(duplicate_sets(near)),
        n_tied_clips=int(tied.sum()), n_sets=int((sizes > 1).sum()),
    )


def split_leakage(ties: DuplicateTies, train_idx: Any, val_idx: Any) -> int:
    """Validation clips whose exact or near copy is in training (0 for a leak-proof split)."""
    tr, va = set(np.asarray(train_idx).tolist()), set(np.asarray(val_idx).tolist())
    bad = set()
    by_hash: dict[str, set[int]] = {}
    for i, h in enumerate(ties.hashes):
        if h:
            by_hash.setdefault(h, set()).add(i)
    for members in by_hash.values():
        if members & tr:
            bad |= members & va
    for i, j, _ in ties.near_pairs:
        if i in va and j in tr:
            bad.add(i)
        if j in va and i in tr:
            bad.add(j)
    return len(bad)


def split_notes(ties: DuplicateTies, paths: Sequence[str], train_idx: Any, val_idx: Any, y: Any, *,
                guessed: bool) -> list[str]:
    """The trainer's warnings about a split: what was tied, and any leak still left.

    ``guessed``: no user groups, so sources are guessed from the file names
    (:func:`soundclass.data.splits.leakage_warning`); content hashes always
    take part, and near-duplicate pairs across the split are counted.
    """
    notes = []
    tied = ties.message()
    if tied:
        notes.append(tied)
    hashes = [h if h else f"<unreadable {i}>" for i, h in enumerate(ties.hashes)]
    groups = None if guessed or ties.groups is None else [str(g) for g in ties.groups]
    msg = leakage_warning(list(paths), train_idx, val_idx, groups=groups, hashes=hashes,
                          labels=np.asarray(y).tolist())
    if msg:
        notes.append(msg)
    n_near = split_leakage(DuplicateTies(groups=None, hashes=[None] * len(hashes), near_pairs=ties.near_pairs),
                           train_idx, val_idx)
    if n_near:
        notes.append(f"{n_near} validation clips have a near duplicate in training")
    return notes
