"""Extract and score in the same worker processes: cold prediction with onnxruntime.

Without a feature cache, :func:`soundclass.inference.predict.predict_paths`
would run two phases per chunk of files: extraction workers fill the cores,
then the model's multi-threaded session fills them.  An onnxruntime session
with two intra-op threads does more CPU work per clip than one with a single
thread (the threads synchronise at every operator of a small convolutional
network), so here each worker process decodes, extracts *and* scores its own
files with a one-thread session of the logits graph, built once per worker,
and only the probabilities travel back.  The features, graph, windows and
batching are those of the two-phase path, so the probabilities are too.

:func:`score_paths` runs the tasks through
:func:`soundclass.util.pool.run_chunked`: a task whose worker dies or
raises comes back as ``None`` and its files are left to the caller (which
scores them the two-phase way, one file at a time if need be), so no file is
lost to a crash here.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.extraction.extract import extract_many, prepare_workers
from soundclass.inference.backends import Backend, OnnxLogits
from soundclass.inference.predictor import predict_proba
from soundclass.util.executors import preload_in_workers
from soundclass.util.pool import run_chunked
from soundclass.util.progress import progress_bar

__all__ = ["PATHS_PER_TASK", "ScoringSpec", "TaskResult", "WorkerScores", "score_paths", "usable"]

preload_in_workers(__name__)  # its functions run in pool workers

#: Files per worker task: enough for full batches, small enough to balance two workers.
PATHS_PER_TASK = 32


@dataclass(frozen=True, eq=False)
class ScoringSpec:
    """What a worker needs to score files as :meth:`Backend.proba` does (picklable, small).

    Attributes
    ----------
    graph_path : str
        The logits graph (ONNX bytes) written once for the workers.
    digest : str
        SHA-256 of the graph: a worker keeps one session per digest.
    min_frames : int
        The graph's shortest input.
    checkpoint : Checkpoint
        The backend's checkpoint without its torch model (``model=None``):
        its feature, input kind, window, standardization and training config
        are what :func:`~soundclass.inference.predictor.predict_proba` reads.
    tta, batch_size : int
    """

    graph_path: str
    digest: str
    min_frames: int
    checkpoint: Any
    tta: int
    batch_size: int


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome: probabilities of its decodable files, reasons for the others.

    Attributes
    ----------
    proba : np.ndarray [shape=(n_ok, n_classes)], float32
        One row per path whose error is ``None``, in order.
    errors : tuple of (str or None)
        Per path: why it could not be decoded or featurized, ``None`` if scored.
    """

    proba: np.ndarray
    errors: tuple[str | None, ...]


@dataclass(frozen=True)
class WorkerScores:
    """What :func:`score_paths` found, per input path.

    Attributes
    ----------
    scored : dict of int -> np.ndarray [shape=(n_classes,)]
        Uncalibrated probabilities by path index.
    errors : dict of int -> str
        Why a path could not be decoded or featurized.
    lost : list of int
        Paths of tasks that failed as a whole (a worker died or raised): not tried here.
    """

    scored: dict[int, np.ndarray]
    errors: dict[int, str]
    lost: list[int]


def usable(runner: Any, *, n_paths: int, n_workers: int, cache_dir: Any, executor: Any) -> bool:
    """Whether :func:`score_paths` applies: an onnxruntime backend, no cache, no given executor,
    several workers and more files than one task."""
    return (isinstance(runner, Backend) and isinstance(runner.logits, OnnxLogits)
            and getattr(runner.logits, "graph", None) is not None
            and cache_dir is None and executor is None and n_workers > 1 and n_paths > PATHS_PER_TASK)


# one session per graph digest in each worker process
_SESSIONS: dict[str, OnnxLogits] = {}


def _session(spec: ScoringSpec) -> OnnxLogits:
    if spec.digest not in _SESSIONS:
        _SESSIONS.clear()  # one model at a time per worker
        graph = Path(spec.graph_path).read_bytes()
        _SESSIONS[spec.digest] = OnnxLogits(graph, min_frames=spec.min_frames, threads=1)
    return _SESSIONS[spec.digest]


def score_task(paths: Sequence[str], *, spec: ScoringSpec) -> TaskResult:
    """Decode, extract and score ``paths`` in this process; a bad file never stops the task."""
    ckpt = spec.checkpoint
    results = extract_many(paths, ckpt.feature, n_jobs=1)  # in this process, never raising for a file
    feats = [r.feature for r in results if r.error is None]
    proba = (predict_proba(ckpt, feats, model=_session(spec), tta=spec.tta, batch_size=spec.batch_size,
                           threads=1) if feats else np.zeros((0, len(ckpt.classes)), dtype=np.float32))
    return TaskResult(proba, tuple(r.error for r in results))


def _lost_task(paths: Sequence[str], reason: str, kind: str) -> None:
    return None  # the caller scores these files the two-phase way


def score_paths(runner: Backend, paths: Sequence[str], *, tta: int, batch_size: int, n_jobs: int | None,
                progress: bool) -> WorkerScores:
    """Score ``paths`` in worker processes, :data:`PATHS_PER_TASK` files per task.

    Parameters
    ----------
    runner : Backend
        An onnxruntime backend (:func:`usable`).
    paths : sequence of str
    tta, batch_size
        As in :meth:`Backend.proba`.
    n_jobs : int or None
        Worker processes (``None``: all CPUs).
    progress : bool
        A progress bar over the files.

    Returns
    -------
    WorkerScores
    """
    graph: bytes = runner.logits.graph
    prepare_workers(runner.checkpoint.feature)
    starts = range(0, len(paths), PATHS_PER_TASK)
    tasks = [list(paths[i : i + PATHS_PER_TASK]) for i in starts]
    bar = progress_bar(len(paths), desc=f"predict ({runner.checkpoint.model_name})", enabled=progress)
    with tempfile.TemporaryDirectory(prefix="soundclass-graph-") as tmp:
        graph_path = os.path.join(tmp, "logits.onnx")
        Path(graph_path).write_bytes(graph)
        spec = ScoringSpec(
            graph_path=graph_path, digest=hashlib.sha256(graph).hexdigest(),
            min_frames=int(runner.logits.min_frames),
            checkpoint=dataclasses.replace(runner.checkpoint, model=None),  # no torch weights to pickle
            tta=int(tta), batch_size=int(batch_size),
        )
        left = [len(paths)]

        def tick(n_tasks: int) -> None:  # tasks hold PATHS_PER_TASK files, the last one the rest
            n = min(n_tasks * PATHS_PER_TASK, left[0])
            left[0] -= n
            bar.update(n)

        try:
            results = run_chunked(functools.partial(score_task, spec=spec), tasks, on_failure=_lost_task,
                                  n_jobs=n_jobs, chunksize=1, progress=tick)
        finally:
            bar.close()
    out = WorkerScores({}, {}, [])
    for start, task, res in zip(starts, tasks, results, strict=True):
        idx = range(start, start + len(task))
        if res is None:
            out.lost.extend(idx)
            continue
        rows = iter(res.proba)
        for i, err in zip(idx, res.errors, strict=True):
            if err is None:
                out.scored[i] = next(rows)
            else:
                out.errors[i] = err
    return out
