r"""Extract features once: a content-addressed, resumable on-disk cache.

Layout below ``root``::

    root/v<N>-<config.key()>/config.json             the FeatureConfig, for humans
    root/v<N>-<config.key()>/index.json              path -> (size, mtime_ns, sha256)
    root/v<N>-<config.key()>/<sha[:2]>/<sha>.npy     the feature of a file's bytes
    root/v<N>-<config.key()>/<sha[:2]>/<sha>.err     JSON {"path", "reason"} of a failure

``N`` is :data:`soundclass.extraction.extract.FEATURE_CODE_VERSION`: a change to the
feature code bumps it, so entries computed by older code are never reused.

Entries are keyed by the SHA-256 of the file *bytes*, so renaming or copying
a file costs nothing and identical content at two paths is computed once; the
index avoids re-hashing files whose size and modification time are unchanged.
Every file is written by :mod:`soundclass.util.atomic` (a temporary name in
its final folder, then :func:`os.replace`), and results are stored as they
arrive, so an interrupted run leaves no half-written entry and the next run
computes only what is missing.

Every feature entry is a ``.npy`` file followed by a trailer of
:data:`CHECKSUM_MAGIC` and the SHA-256 of the ``.npy`` bytes
(:mod:`soundclass.extraction.entry`; ``np.load`` still reads it); an entry
whose checksum does not match (bit rot, a torn write after a power cut, an
entry of an older layout) is recomputed, never returned.  Entries are
therefore not ``fsync``\ ed one by one.

With ``lazy=True`` the features are not kept: every entry is read, checked
and dropped, and :meth:`FeatureCache.get` returns a
:class:`~soundclass.extraction.stored.StoredFeatures` that reads (and checks
again) each entry when it is used, so memory is bounded by what the caller
holds at once, not by the dataset.

Failures are reported, never raised.  Only failures caused by the file's
*content* (undecodable, too short...) are recorded against the content,
and retried with ``retry_failed=True``; failures of access (permission, a
file name the decoder cannot use, a file removed meanwhile) and transient
ones (out of memory, a lost worker) are reported but not recorded, so the
same bytes under another name, or in a later run, are computed again.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.config import FeatureConfig, config_to_dict
from soundclass.errors import CacheEntryError, ParameterError, check_positive_int
from soundclass.extraction import extract as _extract
from soundclass.extraction.entry import CHECKSUM_MAGIC, entry_bytes, read_entry
from soundclass.extraction.extract import FEATURE_CODE_VERSION
from soundclass.extraction.stored import StoredFeatures
from soundclass.util.atomic import is_temp_name, write_bytes_atomic
from soundclass.util.executors import default_n_jobs, make_executor
from soundclass.util.failures import CONTENT, Failure
from soundclass.util.hashing import sha256_file
from soundclass.util.pool import executor_workers, is_broken
from soundclass.util.progress import progress_bar

__all__ = ["CHECKSUM_MAGIC", "CacheStats", "FeatureCache", "get_features"]

#: Temporary files older than this (seconds) are leftovers of a killed run.
STALE_TEMP_SECONDS = 600.0


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=1, sort_keys=True).encode("utf-8")


@dataclass(frozen=True)
class CacheStats:
    """What one :meth:`FeatureCache.get` call did.

    Attributes
    ----------
    n_paths : int
        Paths asked for.
    hashed : int
        Files read to compute their SHA-256 (the others came from the index).
    cached : int
        Distinct contents found in the cache (features or recorded failures).
    computed : int
        Distinct contents sent to :func:`soundclass.extraction.extract.extract_many`.
    failed : int
        Paths without a feature (unreadable, undecodable, ...).
    """

    n_paths: int = 0
    hashed: int = 0
    cached: int = 0
    computed: int = 0
    failed: int = 0


class FeatureCache:
    """A feature cache in folder ``root`` (created on first use).

    Parameters
    ----------
    root : str or os.PathLike
        Cache folder, shared by any number of feature configs.

    Attributes
    ----------
    last_stats : CacheStats
        Counts of the most recent :meth:`get`.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ParameterError(f"cache_dir={os.fspath(root)!r} exists and is not a directory")
        self.last_stats = CacheStats()
        self._dirs: dict[FeatureConfig, Path] = {}  # config.key() is not free

    # -- layout ----------------------------------------------------------------

    def config_dir(self, config: FeatureConfig) -> Path:
        """``root/v<FEATURE_CODE_VERSION>-<config.key()>``."""
        if not isinstance(config, FeatureConfig):
            raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
        cdir = self._dirs.get(config)
        if cdir is None:
            cdir = self._dirs[config] = self.root / f"v{FEATURE_CODE_VERSION}-{config.key()}"
        return cdir

    def entry_path(self, config: FeatureConfig, sha: str, *, suffix: str = ".npy") -> Path:
        """Where the feature (``.npy``) or failure (``.err``) of content ``sha`` lives."""
        return self.config_dir(config) / sha[:2] / f"{sha}{suffix}"

    def _prepare(self, config: FeatureConfig) -> Path:
        cdir = self.config_dir(config)
        try:
            cdir.mkdir(parents=True, exist_ok=True)
            cfg = cdir / "config.json"
            if not cfg.exists():
                write_bytes_atomic(cfg, _json_bytes(config_to_dict(config)))
        except OSError as exc:
            raise ParameterError(
                f"cache_dir={os.fspath(self.root)!r}: cannot write {cdir} ({exc.strerror or exc})"
            ) from exc
        return cdir

    # -- index of file hashes --------------------------------------------------

    def _read_index(self, cdir: Path) -> dict[str, list]:
        try:
            data = json.loads((cdir / "index.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _hash_all(self, paths: Sequence[str], cdir: Path) -> tuple[list[str | None], dict[int, str], int]:
        """SHA-256 of every path (index when unchanged); reasons for unreadable files."""
        index = self._read_index(cdir)
        shas: list[str | None] = []
        errors: dict[int, str] = {}
        hashed = 0
        changed = False
        for i, path in enumerate(paths):
            key = os.path.abspath(path)
            try:
                st = os.stat(path)
                entry = index.get(key)
                if (
                    isinstance(entry, list) and len(entry) == 3
                    and entry[0] == st.st_size and entry[1] == st.st_mtime_ns
                ):
                    shas.append(str(entry[2]))
                    continue
                sha = sha256_file(path)
            except OSError as exc:
                errors[i] = f"cannot read file: {exc.strerror or exc}"
                shas.append(None)
                continue
            hashed += 1
            index[key] = [st.st_size, st.st_mtime_ns, sha]
            changed = True
            shas.append(sha)
        if changed:
            try:
                write_bytes_atomic(cdir / "index.json", _json_bytes(index), fsync=False)
            except OSError:
                pass  # only costs re-hashing next time; entry writes will warn

        return shas, errors, hashed

    # -- entries ---------------------------------------------------------------

    def load(self, config: FeatureConfig, sha: str) -> np.ndarray | None:
        """The cached feature of content ``sha``, or ``None`` if absent, unreadable,
        or its checksum does not match (a damaged entry is recomputed)."""
        try:
            arr = read_entry(self.entry_path(config, sha))
        except CacheEntryError:
            return None
        want_ndim = 1 if config.pooling == "mean" else 2
        if arr.dtype != np.float32 or arr.ndim != want_ndim or arr.shape[0] != config.n_features:
            return None
        return arr

    def load_failure(self, config: FeatureConfig, sha: str) -> str | None:
        """The recorded failure reason of content ``sha``, or ``None``."""
        try:
            data = json.loads(self.entry_path(config, sha, suffix=".err").read_text(encoding="utf-8"))
            return str(data["reason"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def store(self, config: FeatureConfig, sha: str, feature: np.ndarray) -> Path:
        """Write a feature atomically (and drop a failure record of the same content)."""
        path = self.entry_path(config, sha)
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = np.ascontiguousarray(feature, dtype=np.float32)
        write_bytes_atomic(path, entry_bytes(arr), fsync=False)
        try:
            os.unlink(self.entry_path(config, sha, suffix=".err"))
        except FileNotFoundError:
            pass
        return path

    def store_failure(self, config: FeatureConfig, sha: str, *, path: str, reason: str) -> Path:
        """Record atomically why content ``sha`` (first seen at ``path``) failed."""
        out = self.entry_path(config, sha, suffix=".err")
        out.parent.mkdir(parents=True, exist_ok=True)
        record = {"path": path, "reason": reason, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_bytes_atomic(out, _json_bytes(record), fsync=False)
        return out

    def clean_temp(self, config: FeatureConfig, *, max_age: float = STALE_TEMP_SECONDS) -> int:
        """Delete temporary files older than ``max_age`` seconds; returns how many."""
        cdir = self.config_dir(config)
        now = time.time()
        removed = 0
        for folder in [cdir, *(p for p in cdir.iterdir() if p.is_dir())] if cdir.is_dir() else []:
            for entry in os.scandir(folder):
                if is_temp_name(entry.name):
                    try:
                        if now - entry.stat().st_mtime > max_age:
                            os.unlink(entry.path)
                            removed += 1
                    except OSError:
                        pass  # another run finished or removed it
        return removed

    # -- the main entry point --------------------------------------------------

    def get(
        self,
        paths: Iterable[str | os.PathLike],
        config: FeatureConfig,
        *,
        n_jobs: int | None = None,
        executor: Executor | None = None,
        progress: bool = True,
        retry_failed: bool = False,
        chunk_size: int | None = None,
        lazy: bool = False,
        desc: str | None = None,
    ) -> tuple[list[np.ndarray | None] | StoredFeatures, list[Failure]]:
        """Features of ``paths``, computing and storing only the missing ones.

        Parameters and return value as in :func:`get_features`; ``chunk_size``
        is the number of files extracted between two rounds of writes
        (``None``: 64 per worker, 64 to 1024); at most one chunk of work is lost
        when a run is interrupted.
        """
        check_positive_int("chunk_size", chunk_size, allow_none=True)
        paths = [os.fspath(p) for p in paths]
        cdir = self._prepare(config)
        self.clean_temp(config)
        shas, reasons, hashed = self._hash_all(paths, cdir)

        # sha -> its array; with lazy, the shape of an entry on disk (the array only if unwritable)
        found: dict[str, np.ndarray | tuple[int, ...]] = {}
        failed: dict[str, str] = {}
        todo: dict[str, str] = {}  # sha -> first path with that content
        for path, sha in zip(paths, shas, strict=True):
            if sha is None or sha in found or sha in failed or sha in todo:
                continue
            arr = self.load(config, sha)
            if arr is not None:
                found[sha] = arr.shape if lazy else arr
                continue
            reason = None if retry_failed else self.load_failure(config, sha)
            if reason is not None:
                failed[sha] = reason
            else:
                todo[sha] = path
        n_cached = len(found) + len(failed)

        if todo:
            self._compute(
                todo, config, found, failed, lazy=lazy,
                n_jobs=n_jobs, executor=executor, progress=progress, chunk_size=chunk_size, desc=desc,
            )

        features: list = []
        failures: list[Failure] = []
        for i, (path, sha) in enumerate(zip(paths, shas, strict=True)):
            arr = found.get(sha) if sha is not None else None
            features.append(arr)
            if arr is None:
                failures.append(Failure(path, reasons.get(i) or failed.get(sha, "no feature computed")))
        self.last_stats = CacheStats(
            n_paths=len(paths), hashed=hashed, cached=n_cached, computed=len(todo), failed=len(failures)
        )
        if lazy:  # entries on disk by path and shape; an array only where the entry could not be written
            sources = [self.entry_path(config, sha) if isinstance(f, tuple) else f
                       for f, sha in zip(features, shas, strict=True)]
            shapes = [f if isinstance(f, tuple) or f is None else f.shape for f in features]
            return StoredFeatures(sources, shapes), failures
        return features, failures

    def _compute(self, todo, config, found, failed, *, lazy, n_jobs, executor, progress, chunk_size,
                 desc) -> None:

        items = list(todo.items())  # [(sha, path)]
        n_workers = default_n_jobs(n_jobs) if executor is None else executor_workers(executor, n_jobs)
        own = executor is None and n_workers > 1 and len(items) > 1
        if own:
            executor = make_executor("process", n_jobs=min(n_workers, len(items)))
        # Chunks small enough to lose little on interruption, big enough to keep workers busy.
        chunk = chunk_size or int(min(1024, max(64, 64 * n_workers)))
        bar = progress_bar(len(items), desc=desc or _extract.features_desc(config), enabled=progress)
        write_errors = 0
        try:
            for start in range(0, len(items), chunk):
                part = items[start : start + chunk]
                results = _extract.extract_many(
                    [p for _, p in part], config,
                    n_jobs=1 if executor is None else n_jobs, executor=executor, progress=False,
                )
                for (sha, path), res in zip(part, results, strict=True):
                    try:
                        if res.error is None and res.feature is not None:
                            arr = found[sha] = np.ascontiguousarray(res.feature, dtype=np.float32)
                            self.store(config, sha, arr)
                            if lazy:  # written: served from the cache, not held here
                                found[sha] = arr.shape
                        else:
                            reason = res.error or "no feature returned"
                            failed[sha] = reason
                            if res.kind == CONTENT:  # not access or transient causes
                                self.store_failure(config, sha, path=path, reason=reason)
                    except OSError as exc:  # a full or read-only disk must not stop the run
                        if not write_errors:
                            warnings.warn(
                                f"{self.config_dir(config)}: cannot write cache entries "
                                f"({exc.strerror or exc}); features are computed but not cached",
                                RuntimeWarning, stacklevel=3,
                            )
                        write_errors += 1
                bar.update(len(part))
                if own and is_broken(executor):  # a worker died: the next part needs a new pool
                    executor.shutdown(wait=True, cancel_futures=True)
                    executor = make_executor("process", n_jobs=min(n_workers, len(items)))
        finally:
            bar.close()
            if own:
                executor.shutdown(wait=True, cancel_futures=True)


def get_features(
    paths: Iterable[str | os.PathLike],
    config: FeatureConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = True,
    retry_failed: bool = False,
    lazy: bool = False,
    desc: str | None = None,
) -> tuple[list[np.ndarray | None] | StoredFeatures, list[Failure]]:
    """Features of many files, from the cache when possible.

    Parameters
    ----------
    paths : iterable of str or os.PathLike [shape=(n,)]
    config : FeatureConfig
    cache_dir : path or None
        Cache folder (see :class:`FeatureCache`); ``None`` computes everything
        directly and stores nothing.
    n_jobs : int or None
        Worker processes when no ``executor`` is given (``None``: all CPUs).
    executor : concurrent.futures.Executor or None
        Where to compute (:func:`soundclass.util.executors.make_executor`); not shut down.
    progress : bool
        Show a progress bar over the files to compute.
    retry_failed : bool
        Recompute files whose failure was recorded by an earlier run.
    lazy : bool
        With a ``cache_dir``: keep no feature in memory; every entry is
        checked as it is read (or written, for the computed ones) and dropped,
        and ``features`` is a :class:`~soundclass.extraction.stored.StoredFeatures`
        that reads each entry again when it is used.  Ignored without a
        ``cache_dir`` (the features are then computed in memory).
    desc : str, optional
        The progress bar's label (default
        :func:`~soundclass.extraction.extract.features_desc`, ``'features (logmel)'``).

    Returns
    -------
    features : list of (np.ndarray or None) [shape=(n,)], or StoredFeatures
        float32 ``(n_features, t)`` or ``(n_features,)``, in input order;
        ``None`` for a failed file. Paths with identical content share one array
        (one entry, with ``lazy``).
    failures : list of Failure
        One :class:`~soundclass.util.failures.Failure` ``(path, reason)`` per
        ``None`` in ``features``, in input order.
    """
    if cache_dir is None:
        results = _extract.extract_many(paths, config, n_jobs=n_jobs, executor=executor, progress=progress,
                                        desc=desc)
        features = [r.feature if r.error is None else None for r in results]
        failures = [Failure(r.path, r.error or "no feature returned")
                    for r, f in zip(results, features, strict=True) if f is None]
        return features, failures
    return FeatureCache(cache_dir).get(
        paths, config, n_jobs=n_jobs, executor=executor, progress=progress, retry_failed=retry_failed,
        lazy=lazy, desc=desc,
    )
