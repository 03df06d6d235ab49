"""Predicting clips with a trained checkpoint and writing submission CSVs.

:func:`predict_paths` turns files into class probabilities (features from the
cache, optional test-time augmentation); one undecodable file never stops the
batch, it is recorded in ``Predictions.failures``.  :func:`write_submission`
writes the Tianchi/Kaggle format ``name,label`` (file name only, input order,
UTF-8, no index column), optionally with top-k or probability columns.

A submission must list every file, so by default a file that could not be
decoded gets the most likely class a priori (``failed='most_frequent'``), a
warning on stderr and a line in ``<csv>.failed.txt``.
"""

from __future__ import annotations

import csv
import os
import sys
import warnings
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import CheckpointError, ParameterError, SoundclassError

__all__ = [
    "Predictions",
    "FAILED_POLICIES",
    "resolve_checkpoint",
    "predict_paths",
    "use_backend",
    "PATHS_PER_CHUNK",
    "DEFAULT_BATCH_SIZE",
    "top_k_labels",
    "write_submission",
    "failed_list_path",
]

FAILED_POLICIES = ("most_frequent", "skip", "error")


@dataclass(frozen=True, eq=False)
class Predictions:
    """Class probabilities of a list of files.

    Attributes
    ----------
    paths : tuple of str
        Every input file, in input order (failed ones included).
    proba : np.ndarray [shape=(len(paths), n_classes)]
        Probabilities; rows of failed files are NaN.
    failures : Mapping[str, str]
        ``path -> reason`` for every file that could not be predicted.
    classes : tuple of str
        Column names of ``proba`` (the checkpoint's classes).
    """

    paths: tuple[str, ...]
    proba: np.ndarray
    failures: Mapping[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.proba.ndim != 2 or self.proba.shape[0] != len(self.paths):
            raise ParameterError(
                f"proba.shape={self.proba.shape} must be (len(paths)={len(self.paths)}, n_classes)"
            )
        if self.classes and len(self.classes) != self.proba.shape[1]:
            raise ParameterError(
                f"{len(self.classes)} classes do not match proba.shape[1]={self.proba.shape[1]}"
            )

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask [shape=(len(paths),)] of files that were predicted."""
        return np.array([p not in self.failures for p in self.paths], dtype=bool)

    @property
    def predicted(self) -> np.ndarray:
        """Index of the most probable class per file, ``-1`` for failed files."""
        out = np.full(len(self.paths), -1, dtype=np.int64)
        ok = self.ok
        if ok.any():
            out[ok] = np.argmax(self.proba[ok], axis=1)
        return out


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder for a checkpoint folder or a training run folder.

    Accepts ``RUN_DIR`` (containing ``checkpoint/model.json``), the checkpoint
    folder itself, or its ``model.json``.

    Raises
    ------
    CheckpointError
        If neither holds a ``model.json``.
    """
    p = Path(path)
    if p.name == "model.json" and p.is_file():
        return p.parent
    for candidate in (p, p / "checkpoint"):
        if (candidate / "model.json").is_file():
            return candidate
    raise CheckpointError(f"{p}: no checkpoint here (expected model.json in it or in {p / 'checkpoint'})")


def _load(checkpoint: Any) -> Any:
    if isinstance(checkpoint, (str, os.PathLike)):
        from soundclass.inference.checkpoint import load_checkpoint

        return load_checkpoint(resolve_checkpoint(checkpoint))
    return checkpoint


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
    from soundclass.inference.backends import BACKENDS

    if kind not in BACKENDS:
        raise ParameterError(f"backend={kind!r} must be one of {BACKENDS}")
    token = _default_backend.set(kind)
    try:
        yield kind
    finally:
        _default_backend.reset(token)


def _backend(checkpoint: Any, backend: Any) -> Any:
    from soundclass.inference.backends import Backend, make_backend

    if isinstance(backend, Backend):
        return backend
    if isinstance(checkpoint, Backend):
        return checkpoint
    return make_backend(_load(checkpoint), _default_backend.get() if backend is None else backend)


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
    time, each uses all cores.

    Parameters
    ----------
    checkpoint : Checkpoint, Backend or path
        A loaded :class:`soundclass.inference.checkpoint.Checkpoint`, a
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
    from soundclass.errors import check_positive_int
    from soundclass.extraction.cache import get_features
    from soundclass.util.executors import default_n_jobs, make_executor

    if isinstance(tta, bool) or not isinstance(tta, int) or tta < 1:
        raise ParameterError(f"tta={tta!r} must be a positive integer")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    runner = _backend(checkpoint, backend)
    ckpt = runner.checkpoint
    paths = tuple(os.fspath(p) for p in paths)
    classes = tuple(ckpt.classes)
    proba = np.full((len(paths), len(classes)), np.nan, dtype=np.float64)
    if not paths:
        return Predictions(paths, proba, {}, classes)
    failures: dict[str, str] = {}
    own = None
    if executor is None and len(paths) > chunk_size and default_n_jobs(n_jobs) > 1:
        own = executor = make_executor("process", n_jobs=n_jobs)  # one pool for every chunk
    try:
        for lo in range(0, len(paths), chunk_size):
            chunk = list(paths[lo : lo + chunk_size])
            features, failed = get_features(
                chunk, ckpt.feature, cache_dir=cache_dir, n_jobs=n_jobs,
                executor=executor, progress=progress,
            )
            failures.update(failed)
            keep = [i for i, f in enumerate(features) if f is not None]
            if keep:
                rows = [lo + i for i in keep]
                proba[rows] = runner.proba([features[i] for i in keep], tta=tta, batch_size=batch_size)
            del features
    finally:
        if own is not None:
            own.shutdown(wait=True, cancel_futures=True)
    return Predictions(paths, proba, failures, classes)


def top_k_labels(proba: np.ndarray, *, classes: Sequence[str], k: int) -> list[list[str]]:
    """The ``k`` most probable class names of each row, most probable first.

    Ties are broken by class order (stable sort).
    """
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")[:, :k]
    return [[classes[j] for j in row] for row in order]


def failed_list_path(out_csv: str | os.PathLike) -> Path:
    """Where :func:`write_submission` lists the files it could not predict."""
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.name + ".failed.txt")


def _fallback_proba(predictions: Predictions, prior: np.ndarray | None, n_classes: int) -> np.ndarray:
    """The distribution given to failed files: ``prior`` or the predicted-label frequencies."""
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (n_classes,) or (prior < 0).any() or prior.sum() <= 0:
            raise ParameterError(f"prior must be {n_classes} non-negative numbers, not all zero")
        return prior / prior.sum()
    predicted = predictions.predicted
    predicted = predicted[predicted >= 0]
    if predicted.size == 0:
        raise SoundclassError(
            "no file could be predicted, so there is no most frequent class to fill in; "
            "pass prior= or failed='skip'"
        )
    counts = np.bincount(predicted, minlength=n_classes).astype(np.float64)
    return counts / counts.sum()


def write_submission(
    predictions: Predictions,
    out_csv: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    top_k: int = 1,
    with_proba: bool = False,
    failed: str = "most_frequent",
    prior: np.ndarray | None = None,
) -> Path:
    """Write a submission CSV: ``name,label`` (+ ``label_2..label_k``) (+ ``proba_<class>``).

    Parameters
    ----------
    predictions : Predictions
    out_csv : path
        The CSV to write (UTF-8, ``\\n`` line ends, no index column).
    classes : sequence of str, optional
        Class names of the probability columns; default ``predictions.classes``.
    top_k : int
        ``1``: just ``label``; ``k > 1`` adds ``label_2`` .. ``label_k``, the
        next most probable classes.
    with_proba : bool
        Add one ``proba_<class>`` column per class (6 decimals).
    failed : {'most_frequent', 'skip', 'error'}
        What to do with files that could not be predicted.  ``'most_frequent'``
        (default, so the submission lists every file): give them the most
        likely class a priori (``prior``, else the most frequently predicted
        class of this batch) and that distribution as probabilities;
        ``'skip'``: leave them out; ``'error'``: raise.  In the first two cases
        they are reported on stderr and listed, with reasons, in
        ``<out_csv>.failed.txt``.
    prior : np.ndarray [shape=(n_classes,)], optional
        Class prior (e.g. training class counts) used for failed files.

    Returns
    -------
    Path
        ``out_csv``.

    Raises
    ------
    ParameterError
        On bad ``top_k``/``failed``/``classes``.
    SoundclassError
        If ``failed='error'`` and some file failed.
    """
    classes = tuple(classes if classes is not None else predictions.classes)
    n_classes = predictions.proba.shape[1]
    if len(classes) != n_classes:
        raise ParameterError(f"{len(classes)} classes given for {n_classes} probability columns")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= n_classes:
        raise ParameterError(f"top_k={top_k!r} must be an integer in [1, {n_classes}]")
    if failed not in FAILED_POLICIES:
        raise ParameterError(f"failed={failed!r} must be one of {FAILED_POLICIES}")
    out_csv = Path(out_csv)
    failures = {p: predictions.failures[p] for p in predictions.paths if p in predictions.failures}
    if failures and failed == "error":
        first = next(iter(failures.items()))
        raise SoundclassError(f"{len(failures)} file(s) could not be predicted, e.g. {first[0]}: {first[1]}")

    proba = np.array(predictions.proba, dtype=np.float64)
    ok = predictions.ok
    if failures and failed == "most_frequent":
        proba[~ok] = _fallback_proba(predictions, prior, n_classes)
        ok = np.ones(len(predictions.paths), dtype=bool)
    rows = np.flatnonzero(ok)
    names = [os.path.basename(predictions.paths[i]) for i in rows]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        warnings.warn(
            f"{len(dup)} file name(s) occur more than once in {out_csv} (e.g. {dup[0]!r}); "
            "the submission format only keeps file names",
            stacklevel=2,
        )

    header = ["name", "label"] + [f"label_{j}" for j in range(2, top_k + 1)]
    if with_proba:
        header += [f"proba_{c}" for c in classes]
    labels = top_k_labels(proba[rows], classes=classes, k=top_k) if rows.size else []
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    with open(out_csv, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for name, i, top in zip(names, rows, labels, strict=True):
            row = [name, *top]
            if with_proba:
                row += [f"{v:.6f}" for v in proba[i]]
            writer.writerow(row)

    listing = failed_list_path(out_csv)
    if failures:
        with open(listing, "w", encoding="utf-8") as fh:
            for p, reason in failures.items():
                fh.write(f"{p}\t{reason}\n")
        what = "given the most frequent class" if failed == "most_frequent" else "left out"
        print(
            f"warning: {len(failures)} file(s) could not be decoded and were {what}; "
            f"see {listing}",
            file=sys.stderr,
        )
        for p, reason in list(failures.items())[:5]:
            print(f"  {p}: {reason}", file=sys.stderr)
    elif listing.exists():
        listing.unlink()  # a stale list from an earlier run would mislead
    return out_csv
