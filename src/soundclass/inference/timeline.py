"""Long recordings as timelines: stream windows, score them, merge into segments.

An hour of field or kitchen recording is not a clip.  :func:`iter_windows`
reads a file block by block with soundfile (memory bounded by a window and a
block, never the file), downmixes, and resamples the stream to the model rate
with one continuous :class:`soxr.ResampleStream` (no seams at block edges);
:func:`score_windows` batches the windows through any
``proba_fn(list_of_waveforms) -> (n, n_classes)``, so it does not depend on
how a predictor computes features; :func:`merge_segments` joins consecutive
windows with the same label; :func:`write_windows_csv` and
:func:`write_segments_csv` write ``name,start,end,label,p`` rows.

Times are in seconds at the model rate: window ``k`` covers
``[k * hop, k * hop + window)``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np
import soundfile as sf
import soxr

from soundclass.audio import info
from soundclass.errors import AudioDecodeError, ParameterError, check_positive_int

__all__ = [
    "Window",
    "Segment",
    "CSV_COLUMNS",
    "iter_windows",
    "score_windows",
    "merge_segments",
    "write_windows_csv",
    "write_segments_csv",
]

CSV_COLUMNS = ("name", "start", "end", "label", "p")


@dataclass(frozen=True)
class Window:
    """One analysis window: ``y`` [shape=(n,)] float32 covering ``[start, end)`` seconds."""

    start: float
    end: float
    y: np.ndarray


@dataclass(frozen=True)
class Segment:
    """A run of windows with one label; ``p`` is the mean probability of that label."""

    start: float
    end: float
    label: str
    p: float


def _positive_seconds(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ParameterError(f"{name}={value!r} must be a positive number of seconds")
    if not (np.isfinite(value) and value > 0):
        raise ParameterError(f"{name}={value!r} must be a positive number of seconds")
    return float(value)


def iter_windows(
    path: str | os.PathLike,
    *,
    sr: int,
    window_seconds: float,
    hop_seconds: float | None = None,
    min_seconds: float | None = None,
    block_frames: int | None = None,
) -> Iterator[Window]:
    """Stream a (long) file as fixed-length windows at the model sample rate.

    Parameters
    ----------
    path : str or os.PathLike
        Any file :func:`soundclass.audio.load` reads.
    sr : int > 0
        Model sample rate; the stream is resampled to it (soxr HQ, as ``load``).
    window_seconds : float > 0
        Window length.
    hop_seconds : float > 0, optional
        Step between window starts; default ``window_seconds`` (no overlap).
    min_seconds : float >= 0, optional
        The file's tail (from the next window start to the end) is yielded as
        a shorter window when the audio after the last full window's end lasts
        at least this long; default half a window.
        A file shorter than one window is always yielded whole (if not empty).
    block_frames : int > 0, optional
        Frames read from the file per step (native rate); default one hop.

    Yields
    ------
    Window
        ``y`` [shape=(round(window_seconds * sr),)] float32, mono; shorter for the tail.

    Raises
    ------
    AudioDecodeError
        The file cannot be opened or decoded; the message names it.
    """
    sr = check_positive_int("sr", sr)
    window_seconds = _positive_seconds("window_seconds", window_seconds)
    hop_seconds = window_seconds if hop_seconds is None else _positive_seconds("hop_seconds", hop_seconds)
    if min_seconds is None:
        min_seconds = 0.5 * window_seconds
    elif isinstance(min_seconds, bool) or not (np.isfinite(min_seconds) and min_seconds >= 0):
        raise ParameterError(f"min_seconds={min_seconds!r} must be a non-negative number of seconds")
    win = max(1, int(round(window_seconds * sr)))
    hop = max(1, int(round(hop_seconds * sr)))
    min_len = int(round(min_seconds * sr))
    head = info(path)  # validates the file, names it in errors
    if block_frames is None:
        block_frames = max(256, int(np.ceil(hop_seconds * head.sr)))
    else:
        block_frames = check_positive_int("block_frames", block_frames)
    stream = None if head.sr == sr else soxr.ResampleStream(head.sr, sr, 1, dtype="float32", quality="HQ")
    buf = np.zeros(0, dtype=np.float32)  # samples at sr, starting at sample `offset`
    offset = 0  # absolute index (at sr) of buf[0]
    next_start = 0  # absolute index of the next window start
    emitted = False
    try:
        with sf.SoundFile(os.fspath(path)) as f:
            done = False
            while not done:
                block = f.read(frames=int(block_frames), dtype="float32", always_2d=True)
                done = block.shape[0] < block_frames
                mono = block.mean(axis=1) if block.shape[1] > 1 else block[:, 0]
                if not np.isfinite(mono).all():
                    raise AudioDecodeError(path, f"non-finite samples near {f.tell() / head.sr:.2f} s")
                if stream is not None:
                    mono = stream.resample_chunk(np.ascontiguousarray(mono), last=done)
                buf = np.concatenate([buf, mono.astype(np.float32, copy=False)])
                while next_start + win <= offset + buf.size:
                    a = next_start - offset
                    yield Window(next_start / sr, (next_start + win) / sr, buf[a : a + win].copy())
                    next_start += hop
                    emitted = True
                drop = min(next_start - offset, buf.size)  # samples no window needs any more
                if drop > 0:
                    buf, offset = buf[drop:], offset + drop
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise AudioDecodeError(path, f"decoding failed ({exc})") from exc
    total = offset + buf.size
    last_end = next_start - hop + win if emitted else 0  # end of the last full window
    tail = total - next_start
    if tail > 0 and (not emitted or (total - last_end >= max(min_len, 1))):
        a = next_start - offset
        yield Window(next_start / sr, total / sr, buf[a:].copy())


def score_windows(
    windows: Iterable[Window],
    proba_fn: Callable[[list[np.ndarray]], np.ndarray],
    *,
    batch_size: int = 16,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class probabilities of every window, computed in batches.

    Parameters
    ----------
    windows : iterable of Window
        E.g. :func:`iter_windows`; consumed lazily, ``batch_size`` at a time.
    proba_fn : callable
        ``proba_fn(list of waveforms) -> array [shape=(len(list), n_classes)]``.
    batch_size : int > 0

    Returns
    -------
    starts, ends : np.ndarray [shape=(n,)]
        Window times in seconds.
    proba : np.ndarray of float64 [shape=(n, n_classes)]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    starts: list[float] = []
    ends: list[float] = []
    rows: list[np.ndarray] = []
    batch: list[Window] = []

    def flush() -> None:
        p = np.asarray(proba_fn([w.y for w in batch]), dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != len(batch):
            raise ParameterError(f"proba_fn returned shape {p.shape} for {len(batch)} windows")
        if rows and p.shape[1] != rows[0].shape[1]:
            raise ParameterError(f"proba_fn returned {p.shape[1]} classes, earlier {rows[0].shape[1]}")
        if not np.isfinite(p).all():
            raise ParameterError("proba_fn returned NaN or infinite probabilities")
        rows.append(p)
        starts.extend(w.start for w in batch)
        ends.extend(w.end for w in batch)
        batch.clear()

    for w in windows:
        batch.append(w)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    proba = np.concatenate(rows) if rows else np.zeros((0, 0))
    return np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64), proba


def _runs(labels: Sequence[str]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i, lab in enumerate(labels):
        if runs and labels[runs[-1][0]] == lab:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def merge_segments(
    starts: Sequence[float],
    ends: Sequence[float],
    labels: Sequence[str],
    probs: Sequence[float],
    *,
    min_windows: int = 1,
) -> list[Segment]:
    """Join consecutive windows of the same label into segments.

    Each window owns the time from halfway after the previous window's centre
    to halfway before the next one's (the first from its start, the last to
    its end), so the segments tile ``[starts[0], ends[-1]]`` without overlap
    even when windows overlap; a label change falls between two window centres.

    Parameters
    ----------
    starts, ends : sequence of float [shape=(n,)]
        Window times in seconds, in increasing order.
    labels : sequence of str [shape=(n,)]
        Label of each window (e.g. the top class, or ``'unknown'``).
    probs : sequence of float [shape=(n,)]
        Probability of each window's label.
    min_windows : int >= 1
        Runs shorter than this many windows are absorbed by the longer
        neighbouring run (the earlier one on a tie), which smooths isolated
        flickers; ``1`` keeps every run.

    Returns
    -------
    list of Segment
        ``p`` is the mean of ``probs`` over the windows that had the label.
    """
    starts = np.asarray(starts, dtype=np.float64)
    ends = np.asarray(ends, dtype=np.float64)
    probs = np.asarray(probs, dtype=np.float64)
    labels = [str(x) for x in labels]
    n = starts.size
    if not (ends.shape == probs.shape == (n,) and len(labels) == n):
        raise ParameterError(
            f"starts, ends, labels and probs must have one length, got {n}, {ends.size}, {len(labels)}, {probs.size}"
        )
    min_windows = check_positive_int("min_windows", min_windows)
    if n == 0:
        return []
    if (np.diff(starts) < 0).any() or (ends < starts).any():
        raise ParameterError("windows must be in time order with end >= start")
    smoothed = list(labels)
    while True:
        runs = _runs(smoothed)
        short = [k for k, r in enumerate(runs) if len(r) < min_windows]
        if len(runs) == 1 or not short:
            break
        k = min(short, key=lambda k: (len(runs[k]), k))  # the shortest first
        left = len(runs[k - 1]) if k > 0 else -1
        right = len(runs[k + 1]) if k + 1 < len(runs) else -1
        donor = runs[k - 1] if left >= right else runs[k + 1]
        for i in runs[k]:
            smoothed[i] = smoothed[donor[0]]
    centres = 0.5 * (starts + ends)
    cuts = np.r_[starts[0], 0.5 * (centres[1:] + centres[:-1]), ends[-1]]  # window i owns cuts[i:i+2]
    segments = []
    for run in _runs(smoothed):
        label = smoothed[run[0]]
        own = [i for i in run if labels[i] == label]
        segments.append(Segment(float(cuts[run[0]]), float(cuts[run[-1] + 1]), label, float(probs[own].mean())))
    return segments


def _rows_writer(out: str | os.PathLike | IO[str], rows: Iterable[Sequence], *, append: bool) -> None:
    def write(handle: IO[str], header: bool) -> None:
        writer = csv.writer(handle, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        if header:
            writer.writerow(CSV_COLUMNS)
        writer.writerows(rows)

    if hasattr(out, "write"):
        write(out, header=not append)
        return
    path = os.fspath(out)
    header = not (append and os.path.exists(path) and os.path.getsize(path) > 0)
    with open(path, "a" if append else "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        write(handle, header)


def write_windows_csv(
    out: str | os.PathLike | IO[str],
    name: str,
    starts: Sequence[float],
    ends: Sequence[float],
    labels: Sequence[str],
    probs: Sequence[float],
    *,
    append: bool = False,
) -> None:
    """Write one ``name,start,end,label,p`` row per window.

    Parameters
    ----------
    out : path or text file
        A path is written UTF-8 with ``surrogateescape`` (undecodable file
        names survive); the header is written unless appending to a non-empty file.
    name : str
        The recording's name (e.g. its path relative to the input folder).
    starts, ends, labels, probs : sequences [shape=(n,)]
    append : bool
        Add to an existing file (one file for many recordings).
    """
    if not len(starts) == len(ends) == len(labels) == len(probs):
        raise ParameterError("starts, ends, labels and probs must have one length")
    rows = (
        (name, f"{s:.3f}", f"{e:.3f}", lab, f"{p:.4f}")
        for s, e, lab, p in zip(starts, ends, labels, probs, strict=True)
    )
    _rows_writer(out, rows, append=append)


def write_segments_csv(
    out: str | os.PathLike | IO[str], name: str, segments: Iterable[Segment], *, append: bool = False
) -> None:
    """Write one ``name,start,end,label,p`` row per merged :class:`Segment`."""
    rows = ((name, f"{s.start:.3f}", f"{s.end:.3f}", s.label, f"{s.p:.4f}") for s in segments)
    _rows_writer(out, rows, append=append)
