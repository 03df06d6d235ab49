"""Fingerprints of many files and the near-duplicate pairs among them.

The one place that turns files into :func:`soundclass.data.fingerprint.fingerprint`
arrays for ``soundclass scan`` and ``soundclass train``: decoded at
:data:`~soundclass.data.fingerprint.FP_SR` (8 kHz, cheap) on the process pool
of :func:`soundclass.util.pool.run_chunked`, optionally cached by content hash
in ``<cache_dir>/fingerprints/`` (plain ``.npy``, read with
``allow_pickle=False``), so a second run over 3000 clips costs only the pair
search.  A file that cannot be decoded gets ``None`` (no fingerprint, never
tied); it never stops the batch.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.audio import load
from soundclass.data.fingerprint import (
    DEFAULT_THRESHOLD,
    FP_BANDS,
    FP_SR,
    fingerprint,
    near_duplicate_pairs,
)
from soundclass.util.atomic import write_bytes_atomic
from soundclass.util.executors import preload_in_workers
from soundclass.util.pool import run_chunked

__all__ = ["MAX_FINGERPRINT_SECONDS", "FINGERPRINT_FOLDER", "fingerprint_file", "fingerprint_files", "find_near_duplicates"]

preload_in_workers(__name__)  # its functions run in pool workers

#: Only the first this many seconds of a file are fingerprinted (near duplicates are clips, not recordings).
MAX_FINGERPRINT_SECONDS = 60.0
#: Sub-folder of a feature cache holding fingerprints (versioned with the fingerprint's settings).
FINGERPRINT_FOLDER = f"fingerprints/v1-sr{FP_SR}-b{FP_BANDS}"


def fingerprint_file(path: str | os.PathLike) -> np.ndarray | None:
    """The fingerprint of one file, ``None`` if it cannot be decoded (never raises for a bad file)."""
    try:
        y, sr = load(path, sr=FP_SR, duration=MAX_FINGERPRINT_SECONDS)
        return fingerprint(y, sr=sr)
    except Exception:  # noqa: BLE001 - an undecodable file has no fingerprint; the trainer reports it
        return None


def _lost(path: Any, reason: str, kind: str) -> None:
    return None


def _cache_path(cache_dir: str | os.PathLike, sha: str) -> Path:
    return Path(cache_dir) / FINGERPRINT_FOLDER / sha[:2] / f"{sha}.npy"


def _read_cached(path: Path) -> np.ndarray | None:
    try:
        fp = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    return fp if fp.ndim == 2 and fp.shape[0] == FP_BANDS and fp.shape[1] >= 1 else None


def fingerprint_files(
    paths: Sequence[str | os.PathLike],
    *,
    hashes: Sequence[str | None] | None = None,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: Any = None,
) -> list[np.ndarray | None]:
    """Fingerprints of many files, in input order.

    Parameters
    ----------
    paths : sequence of path [shape=(n,)]
    hashes : sequence of str or None [shape=(n,)], optional
        Content hashes; with ``cache_dir``, the cache keys (files with equal
        hashes are fingerprinted once).
    cache_dir : path, optional
        A feature cache folder; fingerprints go to ``<cache_dir>/fingerprints/``.
    n_jobs, executor
        As :func:`soundclass.util.pool.run_chunked`.

    Returns
    -------
    list of (np.ndarray [shape=(FP_BANDS, t)] or None) [shape=(n,)]
        ``None`` for files that cannot be decoded.
    """
    paths = [os.fspath(p) for p in paths]
    out: list[np.ndarray | None] = [None] * len(paths)
    use_cache = cache_dir is not None and hashes is not None
    todo: dict[str, list[int]] = {}  # one computation per content (or per path without hashes)
    for i, p in enumerate(paths):
        key = hashes[i] if hashes is not None and hashes[i] else f"path:{p}"
        if use_cache and not key.startswith("path:"):
            cached = _read_cached(_cache_path(cache_dir, key))
            if cached is not None:
                out[i] = cached
                continue
        todo.setdefault(key, []).append(i)
    keys = list(todo)
    results = run_chunked(fingerprint_file, [paths[todo[k][0]] for k in keys], on_failure=_lost,
                          executor=executor, n_jobs=n_jobs, max_chunksize=64)
    for key, fp in zip(keys, results, strict=True):
        for i in todo[key]:
            out[i] = fp
        if use_cache and fp is not None and not key.startswith("path:"):
            buf = io.BytesIO()
            np.save(buf, fp.astype(np.float32), allow_pickle=False)
            target = _cache_path(cache_dir, key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(target, buf.getvalue(), fsync=False)
            except OSError:
                pass  # only costs recomputing next time
    return out


def find_near_duplicates(
    fingerprints: Sequence[np.ndarray | None],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    hashes: Sequence[str | None] | None = None,
) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs ``(i, j, score)``, ``i < j``, leaving out byte-identical copies.

    Exact copies (equal ``hashes``) are compared once: only the first of each
    content takes part, so the pairs list is about *different* files of one
    recording; exact copies are tied by their hash.
    """
    fps = list(fingerprints)
    if hashes is not None:
        seen: set[str] = set()
        for i, h in enumerate(hashes):
            if h:
                if h in seen:
                    fps[i] = None
                seen.add(h)
    return near_duplicate_pairs(fps, threshold=threshold)
