"""Predicting clips with a trained checkpoint.

:func:`predict_paths` turns files into class probabilities
(:class:`soundclass.inference.predictions.Predictions`; features from the
cache, optional test-time augmentation); one undecodable file never stops the
batch, it is recorded in ``Predictions.failures``.  The submission CSV is
written by :func:`soundclass.inference.submission.write_submission`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

from soundclass.checkpoint.format import as_checkpoint
from soundclass.errors import ParameterError, check_positive_int
from soundclass.extraction.cache import get_features
from soundclass.inference import worker_scoring
from soundclass.inference.backends import BACKENDS, Backend, make_backend
from soundclass.inference.calibration import apply_checkpoint_calibration
from soundclass.inference.predictions import Predictions
from soundclass.util.executors import default_n_jobs, make_executor

__all__ = ["predict_paths", "use_backend", "PATHS_PER_CHUNK", "DEFAULT_BATCH_SIZE"]

PATHS_PER_CHUNK = 512
"""Files whose features are held at once by :func:`predict_paths` (memory bounded by the chunk)."""

DEFAULT_BATCH_SIZE = 8
"""Pieces per forward pass: small batches of long clips run faster on CPU (cache-sized activations)."""

_default_backend: ContextVar[str] = ContextVar("soundclass_backend", default="auto")


@contextmanager
def use_backend(kind: str) -> Iterator[str]:
    """Make ``kind`` the backend of :func:`predict_paths` calls that pass ``backend=None``.

    For callers that reach :func:`predict_paths` through a function without a
    ``backend`` parameter (e.g. ``evaluate_checkpoint``).
    """
    if kind not in BACKENDS:
        raise ParameterError(f"backend={kind!r} must be one of {BACKENDS}")
    token = _default_backend.set(kind)
    try:
        yield kind
    finally:
        _default_backend.reset(token)


def _backend(checkpoint: Any, backend: Any) -> Any:
    if isinstance(backend, Backend):
        return backend
    if isinstance(checkpoint, Backend):
        return checkpoint
    return make_backend(as_checkpoint(checkpoint), _default_backend.get() if backend is None else backend)


def predict_paths(
    checkpoint: Any,
    paths: Sequence[str | os.PathLike],
    *,
    tta: int = 1,
    n_jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    executor: Any = None,
    backend: Any = None,
    chunk_size: int = PATHS_PER_CHUNK,
) -> Predictions:
    """Class probabilities of audio files.

    Features are computed (or read from the cache) ``chunk_size`` files at a
    time, then scored, so memory is bounded by the chunk, not by the number
    of files; the extraction workers and the model never run at the same
    time, each uses all cores.  With an onnxruntime backend, no cache, no
    given ``executor`` and several workers, each worker process extracts and
    scores its own files instead, with a one-thread session
    (:mod:`soundclass.inference.worker_scoring`: less CPU per clip, the same
    probabilities); files of a task whose worker died are scored the first way.

    Parameters
    ----------
    checkpoint : Checkpoint, Backend or path
        A loaded :class:`soundclass.checkpoint.format.Checkpoint`, a
        :class:`soundclass.inference.backends.Backend`, a checkpoint folder or
        a training run folder.
    paths : sequence of path
        Audio files, in the order wanted in the output.
    tta : int
        Test-time augmentation: number of shifted windows averaged per clip
        (``1``: none).
    n_jobs, cache_dir, progress, executor
        Passed to :func:`soundclass.extraction.cache.get_features`.
    batch_size : int
        Pieces (windows or whole clips) per forward pass.
    backend : {'auto', 'torch', 'onnx'}, Backend or None
        See :func:`soundclass.inference.backends.make_backend`; ``None``: the
        one set by :func:`use_backend` (default ``'auto'``).
    chunk_size : int
        Files whose features are held at once.

    Returns
    -------
    Predictions
        ``proba`` [shape=(len(paths), n_classes)], NaN rows for files that
        failed (their reasons in ``failures``).
    """
    tta = check_positive_int("tta", tta, allow_numpy=False)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    runner = _backend(checkpoint, backend)
    ckpt = runner.checkpoint
    paths = tuple(os.fspath(p) for p in paths)
    classes = tuple(ckpt.classes)
    proba = np.full((len(paths), len(classes)), np.nan, dtype=np.float64)
    if not paths:
        return Predictions(paths, proba, {}, classes)
    failures: dict[str, str] = {}
    todo = list(range(len(paths)))  # indices not scored yet
    if worker_scoring.usable(runner, n_paths=len(paths), n_workers=default_n_jobs(n_jobs),
                             cache_dir=cache_dir, executor=executor):
        todo = _score_in_workers(runner, paths, proba, failures, tta=tta, batch_size=batch_size,
                                 n_jobs=n_jobs, progress=progress)
    own = None
    if todo and executor is None and len(todo) > chunk_size and default_n_jobs(n_jobs) > 1:
        own = executor = make_executor("process", n_jobs=n_jobs)  # one pool for every chunk
    try:
        for lo in range(0, len(todo), chunk_size):
            chunk_idx = todo[lo : lo + chunk_size]
            chunk = [paths[i] for i in chunk_idx]
            features, failed = get_features(
                chunk, ckpt.feature, cache_dir=cache_dir, n_jobs=n_jobs,
                executor=executor, progress=progress, desc=f"features ({ckpt.model_name})",
            )
            failures.update(failed)
            keep = [i for i, f in enumerate(features) if f is not None]
            if keep:
                rows = [chunk_idx[i] for i in keep]
                _set_rows(ckpt, proba, failures, paths, rows,
                          runner.proba([features[i] for i in keep], tta=tta, batch_size=batch_size))
            del features
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    failures = {p: failures[p] for p in paths if p in failures}  # input order (retried tasks came last)
    return Predictions(paths, proba, failures, classes)


def _set_rows(ckpt, proba: np.ndarray, failures: dict[str, str], paths: Sequence[str], rows: Sequence[int],
              scored: np.ndarray) -> None:
    """``proba[rows] = scored`` with the checkpoint's temperature (T = 1 if none); a non-finite
    answer becomes a named failure, never a silent label."""
    proba[rows] = apply_checkpoint_calibration(ckpt, scored)
    for r in rows:
        if not np.isfinite(proba[r]).all():
            failures[paths[r]] = "the model's probabilities are not finite (NaN/Inf)"
            proba[r] = np.nan


def _score_in_workers(runner, paths, proba, failures, *, tta, batch_size, n_jobs, progress) -> list[int]:
    """Score ``paths`` with :func:`soundclass.inference.worker_scoring.score_paths`; the indices
    of the files of tasks that failed as a whole (left to the two-phase path)."""
    found = worker_scoring.score_paths(runner, paths, tta=tta, batch_size=batch_size, n_jobs=n_jobs,
                                       progress=progress)
    for i, err in found.errors.items():
        failures[paths[i]] = err
    if found.scored:
        rows = sorted(found.scored)
        _set_rows(runner.checkpoint, proba, failures, paths, rows, np.stack([found.scored[i] for i in rows]))
    return found.lost
