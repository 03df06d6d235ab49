"""A checkpoint over long recordings: window scores, CSV rows and merged segments.

The streaming and merging live in :mod:`soundclass.inference.timeline`; this
module puts a checkpoint behind them:

- :func:`window_proba_fn` turns a checkpoint into the
  ``proba_fn(list of waveforms) -> (n, n_classes)`` that
  :func:`~soundclass.inference.timeline.score_windows` takes (features as
  ``soundclass predict`` computes them, test-time augmentation as today);
- :func:`score_file` streams one file window by window
  (:func:`~soundclass.inference.timeline.iter_windows`: memory bounded by a
  window and a batch, not the file) into a :class:`Timeline`;
- :func:`score_array` does the same for a signal already in memory (the web
  demo's upload), cutting the same windows as :func:`iter_windows`;
- :func:`predict_windows` is ``soundclass predict --windows SECONDS[:HOP]``:
  one ``name,start,end,label,p`` row per window of every file in the output
  CSV, merged segments in ``<stem>.segments.csv``; a file that cannot be read
  is reported and skipped, never stopping the batch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import ParameterError, SoundclassError
from soundclass.inference.timeline import (
    Segment,
    Window,
    iter_windows,
    merge_segments,
    score_windows,
    write_segments_csv,
    write_windows_csv,
)
from soundclass.util.failures import describe
from soundclass.util.progress import progress_bar

__all__ = [
    "Timeline",
    "WindowsResult",
    "parse_windows",
    "default_window_seconds",
    "window_proba_fn",
    "array_windows",
    "score_file",
    "score_array",
    "predict_windows",
    "segments_path",
]

#: Window length when the checkpoint has no training window (vector models trained on whole clips).
FALLBACK_WINDOW_SECONDS = 1.0


@dataclass(frozen=True)
class Timeline:
    """Class probabilities of consecutive windows of one recording.

    Attributes
    ----------
    starts, ends : np.ndarray [shape=(n,)]
        Window times in seconds.
    proba : np.ndarray [shape=(n, n_classes)]
    classes : tuple of str
    """

    starts: np.ndarray
    ends: np.ndarray
    proba: np.ndarray
    classes: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        """Top class of every window."""
        return [self.classes[i] for i in np.argmax(self.proba, axis=1)] if len(self.starts) else []

    @property
    def top_p(self) -> np.ndarray:
        """Probability of every window's top class [shape=(n,)]."""
        return self.proba.max(axis=1) if len(self.starts) else np.zeros(0)

    @property
    def centres(self) -> np.ndarray:
        return 0.5 * (self.starts + self.ends)

    def segments(self, *, min_windows: int = 1) -> list[Segment]:
        """Consecutive windows of one top class merged (:func:`~soundclass.inference.timeline.merge_segments`)."""
        return merge_segments(self.starts, self.ends, self.labels, self.top_p, min_windows=min_windows)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: ``starts``, ``ends``, ``proba`` (rounded), ``labels`` and ``segments``."""
        return {
            "classes": list(self.classes),
            "starts": [round(float(s), 4) for s in self.starts],
            "ends": [round(float(e), 4) for e in self.ends],
            "proba": [[round(float(v), 5) for v in row] for row in self.proba],
            "labels": self.labels,
            "segments": [{"start": round(s.start, 4), "end": round(s.end, 4), "label": s.label,
                          "p": round(s.p, 5)} for s in self.segments()],
        }


@dataclass(frozen=True)
class WindowsResult:
    """What :func:`predict_windows` wrote: files, window and segment counts, failures (``path -> reason``)."""

    windows_csv: Path
    segments_csv: Path
    n_files: int
    n_windows: int
    n_segments: int
    failures: dict = field(default_factory=dict)
    label_seconds: dict = field(default_factory=dict)


def parse_windows(text: str) -> tuple[float | None, float | None]:
    """``'SECONDS'`` or ``'SECONDS:HOP'`` -> ``(window_seconds, hop_seconds)``.

    ``SECONDS`` may be ``auto`` (``None``: the checkpoint's training window,
    :func:`default_window_seconds`); a missing ``HOP`` is ``None`` (no overlap).

    Raises
    ------
    ParameterError
        Not one or two positive numbers.
    """
    parts = str(text).strip().split(":")
    if len(parts) > 2:
        raise ParameterError(f"windows={text!r} must be SECONDS or SECONDS:HOP")
    values: list[float | None] = []
    for i, part in enumerate(parts):
        if i == 0 and part.strip().lower() == "auto":
            values.append(None)
            continue
        try:
            v = float(part)
        except ValueError:
            raise ParameterError(f"windows={text!r} must be SECONDS or SECONDS:HOP (numbers)") from None
        if not (np.isfinite(v) and v > 0):
            raise ParameterError(f"windows={text!r}: window and hop must be positive numbers of seconds")
        values.append(v)
    return values[0], (values[1] if len(values) == 2 else None)


def default_window_seconds(checkpoint: Any) -> float:
    """The checkpoint's training window (``clip_frames`` frames) in seconds, else 1 s."""
    if checkpoint.clip_frames:
        return float(checkpoint.clip_frames) / float(checkpoint.feature.frame_rate)
    return FALLBACK_WINDOW_SECONDS


def window_proba_fn(checkpoint: Any, *, tta: int = 1, batch_size: int = 64
                    ) -> Callable[[list[np.ndarray]], np.ndarray]:
    """``proba_fn(waveforms at feature.sr) -> (n, n_classes)`` of a loaded checkpoint."""
    from soundclass.extraction.extract import compute_feature
    from soundclass.inference.predictor import predict_proba

    def proba_fn(waveforms: list[np.ndarray]) -> np.ndarray:
        feats = [compute_feature(np.asarray(y, dtype=np.float32), checkpoint.feature) for y in waveforms]
        return np.asarray(predict_proba(checkpoint, feats, tta=tta, batch_size=batch_size))

    return proba_fn


def array_windows(y: np.ndarray, *, sr: int, window_seconds: float, hop_seconds: float | None = None,
                  min_seconds: float | None = None) -> Iterator[Window]:
    """The windows :func:`~soundclass.inference.timeline.iter_windows` cuts, of a signal in memory.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``sr``.
    sr : int
    window_seconds, hop_seconds, min_seconds : float
        As in :func:`~soundclass.inference.timeline.iter_windows` (same tail rule).
    """
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ParameterError(f"y must be mono [shape=(n,)], got shape {y.shape}")
    if not (np.isfinite(window_seconds) and window_seconds > 0):
        raise ParameterError(f"window_seconds={window_seconds!r} must be a positive number of seconds")
    hop_seconds = window_seconds if hop_seconds is None else hop_seconds
    if not (np.isfinite(hop_seconds) and hop_seconds > 0):
        raise ParameterError(f"hop_seconds={hop_seconds!r} must be a positive number of seconds")
    min_seconds = 0.5 * window_seconds if min_seconds is None else min_seconds
    win, hop = max(1, int(round(window_seconds * sr))), max(1, int(round(hop_seconds * sr)))
    min_len = int(round(min_seconds * sr))
    start = 0
    while start + win <= y.size:
        yield Window(start / sr, (start + win) / sr, y[start : start + win].copy())
        start += hop
    emitted = start > 0
    last_end = start - hop + win if emitted else 0
    if y.size - start > 0 and (not emitted or y.size - last_end >= max(min_len, 1)):
        yield Window(start / sr, y.size / sr, y[start:].copy())


def score_file(checkpoint: Any, path: str | os.PathLike, *, window_seconds: float | None = None,
               hop_seconds: float | None = None, tta: int = 1, batch_size: int = 16) -> Timeline:
    """Stream ``path`` window by window through the checkpoint.

    Parameters
    ----------
    checkpoint : Checkpoint
    path : path
        Any file soundfile reads; resampled on the fly to ``checkpoint.feature.sr``.
    window_seconds : float, optional
        Default: :func:`default_window_seconds`.
    hop_seconds : float, optional
        Default: ``window_seconds`` (no overlap).
    tta, batch_size : int
        Test-time augmentation; windows per forward pass.

    Raises
    ------
    AudioDecodeError
        The file cannot be read (the message names it).
    """
    window_seconds = default_window_seconds(checkpoint) if window_seconds is None else window_seconds
    windows = iter_windows(path, sr=int(checkpoint.feature.sr), window_seconds=window_seconds,
                           hop_seconds=hop_seconds)
    return _timeline(windows, checkpoint.classes, window_proba_fn(checkpoint, tta=tta), batch_size)


def score_array(y: np.ndarray, proba_fn: Callable[[list[np.ndarray]], np.ndarray], *, sr: int,
                classes: Sequence[str], window_seconds: float, hop_seconds: float | None = None,
                batch_size: int = 16) -> Timeline:
    """A :class:`Timeline` of a signal in memory, through any ``proba_fn`` (e.g. :func:`window_proba_fn`)."""
    windows = array_windows(y, sr=sr, window_seconds=window_seconds, hop_seconds=hop_seconds)
    return _timeline(windows, classes, proba_fn, batch_size)


def _timeline(windows, classes, proba_fn, batch_size) -> Timeline:
    starts, ends, proba = score_windows(windows, proba_fn, batch_size=batch_size)
    if proba.size == 0:
        proba = np.zeros((0, len(classes)))
    return Timeline(starts, ends, proba, tuple(classes))


def segments_path(out_csv: str | os.PathLike) -> Path:
    """``<stem>.segments.csv`` beside the window CSV."""
    out = Path(out_csv)
    return out.with_name(f"{out.stem}.segments.csv")


def predict_windows(
    checkpoint: Any,
    paths: Sequence[str | os.PathLike],
    *,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    out_csv: str | os.PathLike,
    tta: int = 1,
    batch_size: int = 16,
    min_windows: int = 1,
    progress: bool = False,
) -> WindowsResult:
    """Score long recordings window by window and write the window and segment CSVs.

    Parameters
    ----------
    checkpoint : Checkpoint or path
        A loaded checkpoint, a checkpoint folder or a training run folder.
    paths : sequence of path
        Recordings, in output order.
    window_seconds : float, optional
        Window length; default the checkpoint's training window
        (:func:`default_window_seconds`).
    hop_seconds : float, optional
        Step between windows; default ``window_seconds``.
    out_csv : path
        ``name,start,end,label,p`` per window (``name`` is the file name,
        ``label`` the top class, ``p`` its probability); the merged segments
        go to :func:`segments_path` with the same columns.
    tta, batch_size : int
    min_windows : int
        Runs shorter than this many windows are absorbed by a neighbour when
        merging (:func:`~soundclass.inference.timeline.merge_segments`).
    progress : bool
        A bar over the files.

    Returns
    -------
    WindowsResult
        ``failures``: ``path -> reason`` of the files that could not be read.
    """
    from soundclass.checkpoint.format import as_checkpoint

    ckpt = as_checkpoint(checkpoint)
    out = Path(out_csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    seg_out = segments_path(out)
    for target in (out, seg_out):  # header only: a run with no readable file still leaves both files
        write_windows_csv(target, "", [], [], [], [])
    failures: dict[str, str] = {}
    n_windows = n_segments = 0
    label_seconds: dict[str, float] = {}
    paths = [os.fspath(p) for p in paths]
    bar = progress_bar(len(paths), desc=f"windows ({ckpt.model_name})", enabled=progress)
    try:
        for path in paths:
            try:
                tl = score_file(ckpt, path, window_seconds=window_seconds, hop_seconds=hop_seconds,
                                tta=tta, batch_size=batch_size)
            except SoundclassError as exc:
                failures[path] = describe(exc)
                bar.update(1)
                continue
            name = os.path.basename(path)
            write_windows_csv(out, name, tl.starts, tl.ends, tl.labels, tl.top_p, append=True)
            segs = tl.segments(min_windows=min_windows)
            write_segments_csv(seg_out, name, segs, append=True)
            n_windows += len(tl.starts)
            n_segments += len(segs)
            for s in segs:
                label_seconds[s.label] = label_seconds.get(s.label, 0.0) + (s.end - s.start)
            bar.update(1)
    finally:
        bar.close()
    return WindowsResult(out, seg_out, len(paths) - len(failures), n_windows, n_segments, failures,
                         label_seconds)
