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

import functools
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.config import FeatureConfig
from soundclass.extraction.extract import extract_many
from soundclass.inference.backends import Backend, OnnxLogits
from soundclass.inference.predictor import pads_short_clips, predict_logits, softmax
from soundclass.util.pool import run_chunked
from soundclass.util.progress import progress_bar

__all__ = ["PATHS_PER_TASK", "ScoringSpec", "TaskResult", "score_paths", "usable"]

#: Files per worker task: enough for full batches, small enough to balance two workers.
PATHS_PER_TASK = 32


@dataclass(frozen=True, eq=False)
class ScoringSpec:
    """What a worker needs to score files like :meth:`Backend.proba` (picklable, small).

    Attributes
    ----------
    graph_path : str
        The logits graph (ONNX bytes) written once for the workers.
    digest : str
        SHA-256 of the graph: a worker keeps one session per digest.
    min_frames : int
    feature : FeatureConfig
    input_kind : {'sequence', 'vector'}
    clip_frames : int or None
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
    pad_to_window : bool
    tta, batch_size : int
    """

    graph_path: str
    digest: str
    min_frames: int
    feature: FeatureConfig
    input_kind: str
    clip_frames: int | None
    norm_mean: np.ndarray | None
    norm_std: np.ndarray | None
    pad_to_window: bool
    tta: int
    batch_size: int


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome: probabilities of its decodable files, reasons for the others.

    Attributes
    ----------
    proba : np.ndarray [shape=(n_paths, n_classes)], float32, or None
        Rows of failed files are NaN; ``None`` when no file of the task could be scored.
    errors : tuple of (str or None)
        Per path: why it could not be decoded or featurized, ``None`` if scored.
    """

    proba: np.ndarray | None
    errors: tuple[str | None, ...]


def usable(runner: Any, *, n_paths: int, n_workers: int, cache_dir: Any, executor: Any) -> bool:
    """Whether :func:`score_paths` applies: an onnxruntime backend, no cache, no given executor,
    several workers and more files than one task."""
    return (isinstance(runner, Backend) and isinstance(runner.logits, OnnxLogits)
            and getattr(runner.logits, "graph", None) is not None
            and cache_dir is None and executor is None and n_workers > 1 and n_paths > PATHS_PER_TASK)


# one session per graph digest in each worker process (and in this one, for n_jobs=1 tasks)
_SESSIONS: dict[str, OnnxLogits] = {}


def _session(spec: ScoringSpec) -> OnnxLogits:
    if spec.digest not in _SESSIONS:
        _SESSIONS.clear()  # one model at a time per worker
        graph = Path(spec.graph_path).read_bytes()
        _SESSIONS[spec.digest] = OnnxLogits(graph, min_frames=spec.min_frames, threads=1)
    return _SESSIONS[spec.digest]


def score_task(paths: Sequence[str], *, spec: ScoringSpec) -> TaskResult:
    """Decode, extract and score ``paths`` in this process; a bad file never stops the task."""
    results = extract_many(paths, spec.feature, n_jobs=1)  # in this process, never raising for a file
    ok = [i for i, r in enumerate(results) if r.error is None]
    proba = None
    if ok:
        logits = predict_logits(
            _session(spec), [results[i].feature for i in ok], input_kind=spec.input_kind,
            clip_frames=spec.clip_frames, norm_mean=spec.norm_mean, norm_std=spec.norm_std,
            batch_size=spec.batch_size, tta=spec.tta, pad_to_window=spec.pad_to_window, threads=1,
        )
        scored = softmax(logits)  # (len(ok), n_classes)
        proba = np.full((len(paths), scored.shape[1]), np.nan, dtype=np.float32)
        proba[ok] = scored
    return TaskResult(proba, tuple(r.error for r in results))


def _lost_task(paths: Sequence[str], reason: str, kind: str) -> None:
    return None  # the caller scores these files the two-phase way


def score_paths(runner: Backend, paths: Sequence[str], *, tta: int, batch_size: int, n_jobs: int | None,
                progress: bool) -> list[TaskResult | None]:
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
    list of (TaskResult or None)
        One per task of consecutive paths (``paths[k * PATHS_PER_TASK : (k + 1) * PATHS_PER_TASK]``);
        ``None`` for a task that failed as a whole (a worker died or raised).
    """
    ckpt = runner.checkpoint
    graph: bytes = runner.logits.graph
    tasks = [list(paths[i : i + PATHS_PER_TASK]) for i in range(0, len(paths), PATHS_PER_TASK)]
    bar = progress_bar(len(paths), desc="predict", enabled=progress)
    with tempfile.TemporaryDirectory(prefix="soundclass-graph-") as tmp:
        graph_path = os.path.join(tmp, "logits.onnx")
        Path(graph_path).write_bytes(graph)
        spec = ScoringSpec(
            graph_path=graph_path, digest=hashlib.sha256(graph).hexdigest(),
            min_frames=int(runner.logits.min_frames), feature=ckpt.feature, input_kind=ckpt.input,
            clip_frames=ckpt.clip_frames, norm_mean=ckpt.norm_mean, norm_std=ckpt.norm_std,
            pad_to_window=pads_short_clips(ckpt), tta=int(tta), batch_size=int(batch_size),
        )
        left = [len(paths)]

        def tick(n_tasks: int) -> None:  # tasks hold PATHS_PER_TASK files, the last one the rest
            n = min(n_tasks * PATHS_PER_TASK, left[0])
            left[0] -= n
            bar.update(n)

        try:
            return run_chunked(functools.partial(score_task, spec=spec), tasks, on_failure=_lost_task,
                               n_jobs=n_jobs, chunksize=1, progress=tick)
        finally:
            bar.close()
