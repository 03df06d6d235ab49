"""Axis maths shared by the plots: time and frequency bin edges, mel axes, Hz ticks,
display-only pooling of long or tall pictures, colour limits in dB, argument checks."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from soundclass.dsp import filters
from soundclass.errors import ParameterError

__all__ = [
    "MAX_COLUMNS",
    "Y_AXES",
    "axis_hz_to_mel",
    "axis_mel_to_hz",
    "check_2d",
    "db_limits",
    "fft_edges",
    "finite_for_display",
    "hz_tick_label",
    "mel_edges",
    "pool_rows",
    "pool_time",
    "set_hz_ticks",
    "time_edges",
]

Y_AXES = ("log", "linear", "mel")
_NICE_HZ = tuple(m * 10**k for k in range(0, 6) for m in (1, 2, 4, 5))
#: Time frames drawn at most; longer pictures are max-pooled.
MAX_COLUMNS = 2000
_MAX_ROWS = 600  # rows per axis height drawn at most (max-pooled)


def hz_tick_label(x: float, pos: int | None = None) -> str:
    """Tick label for a frequency in Hz: ``0``, ``125``, ``500``, ``1k``, ``2.5k``."""
    if x < 1000:
        return f"{x:g}"
    return f"{x / 1000:g}k"


def finite_for_display(a: np.ndarray) -> np.ndarray:
    """``a`` as float with NaN/Inf replaced by the finite range (for display only)."""
    a = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        good = a[~bad]
        lo = float(good.min()) if good.size else 0.0
        a = np.where(bad, lo, a)
    return a


def db_limits(S_db: np.ndarray, vmin, vmax, top_db: float = 80.0) -> tuple[float, float]:
    """Colour limits: the data's max and ``top_db`` below it, never an empty range."""
    hi = float(np.max(S_db)) if vmax is None else float(vmax)
    lo = max(float(np.min(S_db)), hi - top_db) if vmin is None else float(vmin)
    if hi - lo > 1e-6:
        return lo, hi
    if vmin is None:  # constant data (a silent clip): put it at the top of a top_db range
        return hi - top_db, hi
    return lo, lo + top_db  # vmax missing or not above vmin


def time_edges(n_frames: int, *, sr: float, hop_length: int) -> np.ndarray:
    """Edges in seconds of ``n_frames`` frames ``hop_length`` apart, shape ``(n_frames + 1,)``."""
    return np.arange(n_frames + 1) * (hop_length / float(sr))


def pool_time(S: np.ndarray, edges: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool the columns of ``S`` so at most ``max_columns`` are drawn."""
    t = S.shape[1]
    if t <= max_columns:
        return S, edges
    block = math.ceil(t / max_columns)
    n = math.ceil(t / block)
    pad = n * block - t
    S_pad = np.pad(S, ((0, 0), (0, pad)), mode="edge")
    pooled = S_pad.reshape(S.shape[0], n, block).max(axis=2)
    new_edges = np.append(edges[: t : block], edges[-1])
    return pooled, new_edges


def pool_rows(S: np.ndarray, edges: np.ndarray, ax: Axes, *, cells: int = _MAX_ROWS
              ) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool rows that would share one of ``cells`` equal slices of the y axis.

    Without it, a 1025-bin spectrogram on a log axis puts dozens of bins in
    one pixel and the renderer keeps an arbitrary one: thin high tones vanish.
    """
    if S.shape[0] <= 1:
        return S, edges
    pos = ax.yaxis.get_transform().transform(edges.reshape(-1, 1)).ravel()
    span = pos[-1] - pos[0]
    if not np.isfinite(span) or span <= 0:
        return S, edges
    cell = np.floor((pos[:-1] - pos[0]) / span * cells)
    starts = np.flatnonzero(np.diff(cell, prepend=-1.0))
    if starts.size == S.shape[0]:
        return S, edges
    return np.maximum.reduceat(S, starts, axis=0), np.append(edges[starts], edges[-1])


def fft_edges(n_bins: int, *, sr: float) -> np.ndarray:
    """Edges of the STFT bins (centres ``k * sr / n_fft``), clipped to ``[0, sr/2]``."""
    centres = np.linspace(0.0, sr / 2.0, n_bins)
    half = (centres[1] - centres[0]) / 2.0 if n_bins > 1 else sr / 4.0
    edges = np.concatenate([[centres[0] - half], centres + half])
    return np.clip(edges, 0.0, sr / 2.0)


def axis_hz_to_mel(f, *, htk: bool = False):
    """Hz to mel for a ``'function'`` y scale (negative ``f``, from the margins, clipped to 0)."""
    # negative frequencies only appear in matplotlib's margins; clip them for the htk log
    return filters.hz_to_mel(np.maximum(np.asarray(f, dtype=np.float64), 0.0), htk=htk)


def axis_mel_to_hz(m, *, htk: bool = False):
    """The inverse of :func:`axis_hz_to_mel`, in float64."""
    return filters.mel_to_hz(np.asarray(m, dtype=np.float64), htk=htk)


def mel_edges(n_mels: int, *, fmin: float, fmax: float, htk: bool) -> np.ndarray:
    """Edges of the mel bands in Hz, shape ``(n_mels + 1,)``.

    Band ``i`` is centred on mel point ``i + 1`` of ``n_mels + 2`` (librosa's
    filterbank); inner edges lie midway in mel between neighbouring centres,
    the outer ones at ``fmin`` and ``fmax`` (the outer triangles reach them).
    """
    lo, hi = axis_hz_to_mel(fmin, htk=htk), axis_hz_to_mel(fmax, htk=htk)
    step = (hi - lo) / (n_mels + 1)
    edges = axis_mel_to_hz(lo + step * (0.5 + np.arange(n_mels + 1)), htk=htk)
    edges[0], edges[-1] = fmin, fmax
    return edges


def set_hz_ticks(ax: Axes, lo: float, hi: float, *, min_gap: float = 0.085) -> None:
    """Round Hz ticks on the y axis, labelled like ``500``, ``2k``.

    Linear axes get ~6 evenly spaced round ticks; log and mel axes get the
    1-2-5 series, at least ``min_gap`` of the axis apart, the lowest
    frequency first and then from the top down.
    """
    ax.yaxis.set_major_formatter(FuncFormatter(hz_tick_label))
    ax.set_ylabel("Frequency (Hz)")
    if ax.get_yscale() == "linear":
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 2.5, 5, 10]))
        return
    transform = ax.yaxis.get_transform()
    to_axis: Callable[[np.ndarray], np.ndarray] = lambda v: transform.transform(  # noqa: E731
        np.asarray(v, dtype=np.float64).reshape(-1, 1)
    ).ravel()
    t_lo, t_hi = to_axis([lo, hi])
    span = t_hi - t_lo if t_hi > t_lo else 1.0
    candidates = [v for v in (0.0, *_NICE_HZ) if lo <= v <= hi]
    chosen: dict[float, float] = {}  # tick -> position in axis fraction
    for v in candidates[:1] + sorted(candidates[1:], reverse=True):
        pos = (to_axis([v])[0] - t_lo) / span
        if all(abs(pos - p) >= min_gap for p in chosen.values()):
            chosen[v] = pos
    ax.yaxis.set_major_locator(FixedLocator(sorted(chosen)))
    ax.yaxis.set_minor_locator(FixedLocator([]))


def check_2d(name: str, S) -> np.ndarray:
    """``S`` as an array [shape=(n_bins, t)], ``n_bins > 0``; else ParameterError naming ``name``."""
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] == 0:
        raise ParameterError(f"{name} must be 2-D (n_bins, t) with n_bins > 0; got shape {S.shape}")
    return S
