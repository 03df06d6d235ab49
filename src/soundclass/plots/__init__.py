"""Pictures of clips, datasets and training runs (matplotlib, no GUI).

Every ``plot_*`` function draws on an ``ax`` it is given and returns the main
artist (spectrogram-like pictures) or the ``ax``; none calls ``show()``.
Figures that soundclass itself creates (:func:`new_figure`, :func:`show_file`,
the scan and run reports) are plain :class:`matplotlib.figure.Figure` objects
bound to the Agg canvas: they never touch pyplot's global state or the
user's backend, so they cannot leak and they work on headless machines.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

from soundclass.dsp import filters
from soundclass.errors import ParameterError

__all__ = [
    "new_figure",
    "save_figure",
    "plot_waveform",
    "plot_spectrogram",
    "plot_mel",
    "plot_mfcc",
    "plot_class_counts",
    "plot_durations",
    "plot_history",
    "plot_confusion",
    "show_file",
    "hz_tick_label",
]

SPEC_CMAP = "magma"
MFCC_CMAP = "coolwarm"
DB_FORMAT = "%+2.0f dB"
Y_AXES = ("log", "linear", "mel")
_NICE_HZ = tuple(m * 10**k for k in range(0, 6) for m in (1, 2, 4, 5))
_MAX_COLUMNS = 2000  # time frames drawn at most; longer pictures are max-pooled
_MAX_ROWS = 600  # rows per axis height drawn at most (max-pooled)


# ----------------------------------------------------------------------------- figures


def new_figure(*, figsize: tuple[float, float] = (8.0, 4.5), nrows: int = 1, ncols: int = 1,
               **kwargs) -> tuple[Figure, np.ndarray | Axes]:
    """A figure on the Agg canvas with its axes (constrained layout).

    Parameters
    ----------
    figsize : (width, height) in inches
    nrows, ncols : int
        Grid of axes, as in ``plt.subplots``.
    **kwargs
        Passed to :meth:`Figure.subplots` (``width_ratios``, ``sharex``, ...).

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot: nothing to close, nothing leaks.
    axes : Axes or ndarray of Axes
    """
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> str:
    """Write ``fig`` to ``path`` (PNG unless the suffix says otherwise); returns the path."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return str(path)


# ----------------------------------------------------------------------------- helpers


def _positive(name: str, value, *, allow_float: bool = True) -> None:
    ok = isinstance(value, (int, float) if allow_float else int) and not isinstance(value, bool)
    if not ok or not value > 0:
        raise ParameterError(f"{name}={value!r} must be a positive number")


def hz_tick_label(x: float, pos: int | None = None) -> str:
    """Tick label for a frequency in Hz: ``0``, ``125``, ``500``, ``1k``, ``2.5k``."""
    if x < 1000:
        return f"{x:g}"
    return f"{x / 1000:g}k"


def _finite(a: np.ndarray) -> np.ndarray:
    """``a`` as float with NaN/Inf replaced by the finite range (for display only)."""
    a = np.asarray(a, dtype=np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        good = a[~bad]
        lo = float(good.min()) if good.size else 0.0
        a = np.where(bad, lo, a)
    return a


def _db_limits(S_db: np.ndarray, vmin, vmax, top_db: float = 80.0) -> tuple[float, float]:
    """Colour limits: the data's max and ``top_db`` below it, never an empty range."""
    hi = float(np.max(S_db)) if vmax is None else float(vmax)
    lo = max(float(np.min(S_db)), hi - top_db) if vmin is None else float(vmin)
    if hi - lo > 1e-6:
        return lo, hi
    if vmin is None:  # constant data (a silent clip): put it at the top of a top_db range
        return hi - top_db, hi
    return lo, lo + top_db  # vmax missing or not above vmin


def _time_edges(n_frames: int, *, sr: float, hop_length: int) -> np.ndarray:
    return np.arange(n_frames + 1) * (hop_length / float(sr))


def _pool_time(S: np.ndarray, edges: np.ndarray, max_columns: int) -> tuple[np.ndarray, np.ndarray]:
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


def _pool_rows(S: np.ndarray, edges: np.ndarray, ax: Axes, *, cells: int = _MAX_ROWS
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


def _fft_edges(n_bins: int, *, sr: float) -> np.ndarray:
    """Edges of the STFT bins (centres ``k * sr / n_fft``), clipped to ``[0, sr/2]``."""
    centres = np.linspace(0.0, sr / 2.0, n_bins)
    half = (centres[1] - centres[0]) / 2.0 if n_bins > 1 else sr / 4.0
    edges = np.concatenate([[centres[0] - half], centres + half])
    return np.clip(edges, 0.0, sr / 2.0)


def _hz_to_mel(f, *, htk: bool = False):
    # negative frequencies only appear in matplotlib's margins; clip them for the htk log
    return filters.hz_to_mel(np.maximum(np.asarray(f, dtype=np.float64), 0.0), htk=htk)


def _mel_to_hz(m, *, htk: bool = False):
    return filters.mel_to_hz(np.asarray(m, dtype=np.float64), htk=htk)


def _mel_edges(n_mels: int, *, fmin: float, fmax: float, htk: bool) -> np.ndarray:
    """Edges of the mel bands in Hz, shape ``(n_mels + 1,)``.

    Band ``i`` is centred on mel point ``i + 1`` of ``n_mels + 2`` (librosa's
    filterbank); inner edges lie midway in mel between neighbouring centres,
    the outer ones at ``fmin`` and ``fmax`` (the outer triangles reach them).
    """
    lo, hi = _hz_to_mel(fmin, htk=htk), _hz_to_mel(fmax, htk=htk)
    step = (hi - lo) / (n_mels + 1)
    edges = _mel_to_hz(lo + step * (0.5 + np.arange(n_mels + 1)), htk=htk)
    edges[0], edges[-1] = fmin, fmax
    return edges


def _set_hz_ticks(ax: Axes, lo: float, hi: float, *, min_gap: float = 0.085) -> None:
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


def _colorbar(ax: Axes, mappable, *, fmt: str | None, label: str | None = None):
    cbar = ax.figure.colorbar(mappable, ax=ax, format=fmt, pad=0.01, fraction=0.05)
    if label:
        cbar.set_label(label)
    return cbar


def _check_2d(name: str, S) -> np.ndarray:
    S = np.asarray(S)
    if S.ndim != 2 or S.shape[0] == 0:
        raise ParameterError(f"{name} must be 2-D (n_bins, t) with n_bins > 0; got shape {S.shape}")
    return S


# ----------------------------------------------------------------------------- signals


def plot_waveform(
    y: np.ndarray,
    *,
    sr: float,
    ax: Axes,
    max_points: int = 4000,
    color: str = "tab:blue",
    offset: float = 0.0,
) -> Axes:
    """Draw a waveform against time in seconds.

    Long signals are drawn as their min/max envelope over ``max_points // 2``
    blocks, so a one-hour file costs as little as a short one and no peak is
    lost.  Non-finite samples are drawn as 0.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        The signal; several channels are drawn on top of each other.
    sr : float
        Sample rate in Hz.
    ax : Axes
    max_points : int
        Points drawn per channel at most (decimation threshold).
    offset : float
        Time in seconds of the first sample (for excerpts).

    Returns
    -------
    Axes
    """
    _positive("sr", sr)
    if isinstance(max_points, bool) or not isinstance(max_points, int) or max_points < 4:
        raise ParameterError(f"max_points={max_points!r} must be an integer >= 4")
    y = np.asarray(y)
    if y.ndim == 1:
        y = y[np.newaxis]
    if y.ndim != 2:
        raise ParameterError(f"y must have shape (n,) or (channels, n); got {y.shape}")
    y = np.where(np.isfinite(y), y, 0.0).astype(np.float64, copy=False)
    n = y.shape[1]
    colors = [color, "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for c, channel in enumerate(y):
        kw = {"color": colors[c % len(colors)], "alpha": 0.9 if c == 0 else 0.6}
        if y.shape[0] > 1:
            kw["label"] = f"ch {c + 1}"
        if n > max_points:
            block = math.ceil(n / (max_points // 2))
            m = math.ceil(n / block)
            padded = np.pad(channel, (0, m * block - n), mode="edge").reshape(m, block)
            t = offset + (np.arange(m) * block + block / 2.0) / sr
            ax.fill_between(t, padded.min(axis=1), padded.max(axis=1), linewidth=0.4, **kw)
        else:
            ax.plot(offset + np.arange(n) / sr, channel, linewidth=0.6, **kw)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    lim = 1.05 * peak if peak > 0 else 1.0
    ax.set_ylim(-lim, lim)
    ax.set_xlim(offset, offset + max(n, 1) / sr)
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Amplitude")
    ax.axhline(0.0, color="0.6", linewidth=0.5, zorder=0)
    if y.shape[0] > 1:
        ax.legend(loc="upper right", fontsize="small", ncols=min(y.shape[0], 4))
    return ax


def _mesh(
    S_db: np.ndarray,
    freq_edges: np.ndarray,
    *,
    sr: float,
    hop_length: int,
    ax: Axes,
    cmap: str,
    vmin,
    vmax,
    offset: float,
):
    S = _finite(S_db)
    vmin, vmax = _db_limits(S, vmin, vmax)
    t_edges = offset + _time_edges(S.shape[1], sr=sr, hop_length=hop_length)
    if S.shape[1] == 0:  # shorter than one frame: draw one empty column
        S = np.full((S.shape[0], 1), vmin)
        t_edges = np.array([offset, offset + hop_length / float(sr)])
    S, t_edges = _pool_time(S, t_edges, _MAX_COLUMNS)
    S, freq_edges = _pool_rows(S, freq_edges, ax)
    mesh = ax.pcolormesh(t_edges, freq_edges, S, cmap=cmap, vmin=vmin, vmax=vmax,
                         shading="flat", rasterized=True)
    ax.set_xlim(t_edges[0], t_edges[-1])
    ax.set_xlabel("Time (s)")
    return mesh


def plot_spectrogram(
    S_db: np.ndarray,
    *,
    sr: float,
    hop_length: int,
    ax: Axes,
    y_axis: str = "log",
    fmin: float | None = None,
    fmax: float | None = None,
    htk: bool = False,
    colorbar: bool = True,
    cmap: str = SPEC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    offset: float = 0.0,
):
    """Draw a spectrogram in dB with a frequency axis in Hz.

    Parameters
    ----------
    S_db : np.ndarray [shape=(1 + n_fft // 2, t)] or [shape=(n_mels, t)] for ``y_axis='mel'``
        Values in dB (``amplitude_to_db`` / ``power_to_db``); NaN/Inf are drawn
        as the lowest finite value.
    sr : float
        Sample rate of the analysed signal in Hz.
    hop_length : int
        Samples between frames (frame ``k`` starts at ``k * hop_length / sr`` s).
    ax : Axes
    y_axis : {'log', 'linear', 'mel'}
        ``'log'``: symmetric-log (base 2) frequency axis, linear below 64 Hz;
        ``'linear'``: linear Hz; ``'mel'``: rows are mel bands between ``fmin``
        and ``fmax`` drawn on a mel-spaced axis.
    fmin, fmax : float, optional
        Frequency range shown (mel: the filterbank's range); default ``0`` and ``sr / 2``.
    htk : bool
        Mel formula of the filterbank (``y_axis='mel'`` only).
    colorbar : bool
        Add a colour bar labelled ``"%+2.0f dB"``.
    vmin, vmax : float, optional
        Colour range; default the data's maximum and 80 dB below it.
    offset : float
        Time in seconds of the first frame.

    Returns
    -------
    matplotlib.collections.QuadMesh
        Its colour bar, if any, is ``mesh.colorbar``.
    """
    _positive("sr", sr)
    _positive("hop_length", hop_length, allow_float=False)
    if y_axis not in Y_AXES:
        raise ParameterError(f"y_axis={y_axis!r} must be one of {Y_AXES}")
    S_db = _check_2d("S_db", S_db)
    nyquist = sr / 2.0
    lo = 0.0 if fmin is None else float(fmin)
    hi = nyquist if fmax is None else float(fmax)
    if not 0.0 <= lo < hi:
        raise ParameterError(f"fmin={fmin!r} must be >= 0 and < fmax={hi!r}")
    if y_axis == "mel":
        if hi > nyquist + 1e-9:
            raise ParameterError(f"fmax={fmax!r} must be <= sr/2={nyquist!r}")
        edges = _mel_edges(S_db.shape[0], fmin=lo, fmax=hi, htk=htk)
        ax.set_yscale("function", functions=(lambda f: _hz_to_mel(f, htk=htk),
                                             lambda m: _mel_to_hz(m, htk=htk)))
        view = (lo, hi)
    else:
        edges = _fft_edges(S_db.shape[0], sr=sr)
        if y_axis == "log":
            ax.set_yscale("symlog", base=2, linthresh=64.0, linscale=0.5)
        view = (lo, min(hi, nyquist))
    mesh = _mesh(S_db, edges, sr=sr, hop_length=hop_length, ax=ax, cmap=cmap,
                 vmin=vmin, vmax=vmax, offset=offset)
    ax.set_ylim(*view)
    _set_hz_ticks(ax, *view)
    if colorbar:
        _colorbar(ax, mesh, fmt=DB_FORMAT)
    return mesh


def plot_mel(
    S_db: np.ndarray,
    *,
    sr: float,
    hop_length: int,
    ax: Axes,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    colorbar: bool = True,
    cmap: str = SPEC_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    offset: float = 0.0,
):
    """Draw a (log-)mel spectrogram on a mel-spaced axis labelled in Hz.

    Parameters
    ----------
    S_db : np.ndarray [shape=(n_mels, t)]
        Mel spectrogram in dB.
    sr, hop_length
        As for :func:`plot_spectrogram`.
    fmin, fmax, htk
        The mel filterbank's settings (``fmax`` defaults to ``sr / 2``).

    Returns
    -------
    matplotlib.collections.QuadMesh
    """
    return plot_spectrogram(S_db, sr=sr, hop_length=hop_length, ax=ax, y_axis="mel",
                            fmin=fmin, fmax=fmax, htk=htk, colorbar=colorbar, cmap=cmap,
                            vmin=vmin, vmax=vmax, offset=offset)


def plot_mfcc(
    M: np.ndarray,
    *,
    sr: float,
    hop_length: int,
    ax: Axes,
    colorbar: bool = True,
    cmap: str = MFCC_CMAP,
    offset: float = 0.0,
):
    """Draw MFCCs (coefficient index against time) with a diverging colour map.

    The colour range is symmetric around 0 and set by coefficients 1 and up
    (coefficient 0, the log energy, is much larger and would wash them out;
    it saturates instead).

    Parameters
    ----------
    M : np.ndarray [shape=(n_mfcc, t)]
    sr, hop_length, offset
        As for :func:`plot_spectrogram`.

    Returns
    -------
    matplotlib.collections.QuadMesh
    """
    _positive("sr", sr)
    _positive("hop_length", hop_length, allow_float=False)
    M = _finite(_check_2d("M", M))
    rest = M[1:] if M.shape[0] > 1 else M
    lim = float(np.percentile(np.abs(rest), 99)) if rest.size else 0.0
    lim = lim if lim > 1e-9 else 1.0
    edges = np.arange(M.shape[0] + 1) - 0.5
    mesh = _mesh(M, edges, sr=sr, hop_length=hop_length, ax=ax, cmap=cmap,
                 vmin=-lim, vmax=lim, offset=offset)
    ax.set_ylim(edges[0], edges[-1])
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
    ax.set_ylabel("MFCC")
    if colorbar:
        _colorbar(ax, mesh, fmt=None)
    return mesh


# ----------------------------------------------------------------------------- datasets


def _imbalance(counts: Mapping[str, int]) -> float:
    values = [int(v) for v in counts.values()]
    lo = min(values)
    return math.inf if lo == 0 else max(values) / lo


def plot_class_counts(
    counts: Mapping[str, int],
    *,
    ax: Axes,
    bad: Mapping[str, int] | None = None,
    color: str = "tab:blue",
) -> Axes:
    """Horizontal bars of clips per class, largest on top, each annotated.

    The title gives the number of clips and classes and the imbalance ratio
    (largest class / smallest class).

    Parameters
    ----------
    counts : dict of {class name: count}
    ax : Axes
    bad : dict of {class name: count}, optional
        Unreadable clips among ``counts``, drawn in red at the end of each bar.

    Returns
    -------
    Axes
    """
    if not counts:
        raise ParameterError("counts is empty: no classes to draw")
    if any(int(v) < 0 for v in counts.values()):
        raise ParameterError(f"counts must be non-negative; got {dict(counts)}")
    order = sorted(counts, key=lambda k: (-int(counts[k]), str(k)))[::-1]  # largest last = top
    values = [int(counts[k]) for k in order]
    n_bad = [min(int((bad or {}).get(k, 0)), v) for k, v in zip(order, values, strict=True)]
    ax.barh(range(len(order)), [v - b for v, b in zip(values, n_bad, strict=True)], color=color,
            height=0.7, label="readable")
    bars = ax.barh(range(len(order)), n_bad, left=[v - b for v, b in zip(values, n_bad, strict=True)],
                   color="tab:red", height=0.7, label="unreadable")
    ax.bar_label(bars, labels=[f"{v} ({b} bad)" if b else str(v)
                               for v, b in zip(values, n_bad, strict=True)],
                 padding=3, fontsize="small")
    if any(n_bad):
        ax.legend(loc="lower right", fontsize="small")
    ax.set_yticks(range(len(order)), [str(k) for k in order],
                  fontsize="small" if len(order) > 12 else "medium")
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlim(0, max(max(values), 1) * (1.25 if any(n_bad) else 1.15))
    ax.set_xlabel("Clips")
    ratio = _imbalance(counts)
    ratio_text = "inf (an empty class)" if math.isinf(ratio) else f"{ratio:.1f}:1"
    ax.set_title(f"{sum(values)} clips in {len(order)} classes - imbalance {ratio_text}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


def plot_durations(
    durations: Sequence[float] | np.ndarray,
    *,
    ax: Axes,
    by_class: Sequence[str] | None = None,
    color: str = "tab:blue",
) -> Axes:
    """Distribution of clip durations in seconds.

    Without ``by_class``: a histogram with the median marked.  With
    ``by_class`` (one label per duration): one horizontal box per class, which
    stays readable for 20 classes.  Non-finite durations (unreadable clips)
    are skipped.

    Parameters
    ----------
    durations : array-like [shape=(n,)]
        Seconds.
    by_class : sequence of str [shape=(n,)], optional

    Returns
    -------
    Axes
    """
    d = np.asarray(durations, dtype=np.float64).ravel()
    if by_class is not None and len(by_class) != d.size:
        raise ParameterError(f"by_class has {len(by_class)} labels for {d.size} durations")
    keep = np.isfinite(d)
    ax.set_xlabel("Duration (s)")
    if not keep.any():
        ax.text(0.5, 0.5, "no readable clips", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Durations")
        return ax
    d_ok = d[keep]
    stats = (f"n={d_ok.size}, median {np.median(d_ok):.2f} s, "
             f"range {d_ok.min():.2f}-{d_ok.max():.2f} s")
    if by_class is None:
        edges = np.histogram_bin_edges(d_ok, bins="auto")
        if edges.size > 61:
            edges = np.histogram_bin_edges(d_ok, bins=60)
        ax.hist(d_ok, bins=edges, color=color, alpha=0.85)
        ax.axvline(float(np.median(d_ok)), color="tab:red", linestyle="--", linewidth=1,
                   label="median")
        ax.legend(loc="upper right", fontsize="small")
        ax.set_ylabel("Clips")
    else:
        labels = np.asarray([str(c) for c in by_class], dtype=object)[keep]
        classes = sorted(set(labels.tolist()))[::-1]  # alphabetical from the top
        data = [d_ok[labels == c] for c in classes]
        kw = {"widths": 0.6, "showfliers": True, "patch_artist": True,
              "flierprops": {"markersize": 2, "alpha": 0.5},
              "medianprops": {"color": "tab:red"},
              "boxprops": {"facecolor": "tab:blue", "alpha": 0.35}}
        try:
            ax.boxplot(data, orientation="horizontal", **kw)
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(data, vert=False, **kw)
        ax.set_yticks(range(1, len(classes) + 1),
                      [f"{c} ({len(x)})" for c, x in zip(classes, data, strict=True)],
                      fontsize="small" if len(classes) > 12 else "medium")
    ax.set_title(f"Durations: {stats}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


# ----------------------------------------------------------------------------- training


_NOT_CURVES = frozenset({"lr", "epoch", "epochs", "time", "seconds"})


def _has_finite(values: Sequence[float]) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).any())


def _best(history: Mapping[str, Sequence[float]], monitor: str | None) -> tuple[str, int] | None:
    """``(key, 0-based epoch)`` of the best monitored value, or None if nothing finite."""
    if monitor is not None and monitor not in history:
        raise ParameterError(f"monitor={monitor!r} is not in history ({', '.join(history)})")
    if monitor is None:
        order = (["val_loss"] + [k for k in history if k.startswith("val_")]
                 + [k for k in history if "loss" in k])
        monitor = next((k for k in order if k in history and _has_finite(history[k])), None)
    if monitor is None or not _has_finite(history[monitor]):
        return None
    v = np.asarray(history[monitor], dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    idx = int(np.nanargmin(v) if "loss" in monitor else np.nanargmax(v))
    return monitor, idx


def plot_history(
    history: Mapping[str, Sequence[float]],
    *,
    ax: Axes,
    monitor: str | None = None,
) -> Axes:
    """Loss curves (left axis) and metrics (right axis) per epoch, best epoch marked.

    Parameters
    ----------
    history : dict of {name: list of float}
        One value per epoch, e.g. ``train_loss``, ``val_loss``, ``val_accuracy``,
        ``val_macro_f1``.  Keys containing ``loss`` go on the left axis, the
        other metrics on a twin right axis; ``epoch`` (if given) numbers the x
        axis, ``lr``/``time``/``seconds`` are not drawn, nor are series
        without a finite value (e.g. ``val_*`` of a run without validation).
    monitor : str, optional
        Key deciding the best epoch (minimum if it contains ``loss``, else
        maximum).  Default ``val_loss``, else the first ``val_*`` key, else a
        loss, whichever has finite values first.

    Returns
    -------
    Axes
        The loss axes; the metric axes, if any, is its twin.
    """
    if not history or not any(len(v) for v in history.values()):
        raise ParameterError("history is empty: nothing to draw")
    curves = [k for k in history
              if k not in _NOT_CURVES and len(history[k]) and _has_finite(history[k])]
    losses = [k for k in curves if "loss" in k]
    metrics = [k for k in curves if "loss" not in k]
    n_epochs = max((len(history[k]) for k in curves), default=0)
    epochs = history.get("epoch")
    if epochs is not None and len(epochs) == n_epochs and n_epochs:
        x_all = np.asarray(epochs, dtype=np.float64)
    else:
        x_all = np.arange(1, n_epochs + 1, dtype=np.float64)
    handles = []
    ax2 = ax.twinx() if losses and metrics else ax
    for i, k in enumerate(losses + metrics):
        target = ax if k in losses else ax2
        (line,) = target.plot(x_all[: len(history[k])], history[k],
                              "--" if k.startswith("train") else "-", marker=".",
                              color=f"C{i % 10}", label=k)
        handles.append(line)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss" if losses else "Metric")
    if ax2 is not ax:
        ax2.set_ylabel("Metric")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if n_epochs:
        ax.set_xlim(x_all[0] - 0.5, x_all[-1] + 0.5)
    best = _best(history, monitor)
    if best is not None:
        key, idx = best
        value = float(history[key][idx])
        x_best = float(x_all[idx]) if idx < x_all.size else idx + 1.0
        ax.axvline(x_best, color="0.4", linestyle=":", linewidth=1)
        line_of = {h.get_label(): h for h in handles}
        target = line_of[key].axes if key in line_of else ax
        target.plot([x_best], [value], marker="*", markersize=12, color="gold",
                    markeredgecolor="black", zorder=5, linestyle="none")
        ax.set_title(f"Best epoch {x_best:g}: {key} = {value:.4g}")
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncols=min(len(handles), 4), fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_confusion(
    cm: np.ndarray,
    *,
    classes: Sequence[str],
    ax: Axes,
    normalize: bool = True,
    cmap: str = "Blues",
    colorbar: bool = False,
):
    """Confusion matrix: counts written in the cells, colours row-normalised.

    Parameters
    ----------
    cm : np.ndarray [shape=(n_classes, n_classes)]
        Counts, rows = true class, columns = predicted class.
    classes : sequence of str [shape=(n_classes,)]
    normalize : bool
        Colour by the fraction of each true class (recall per cell); False
        colours by raw counts.

    Returns
    -------
    matplotlib.image.AxesImage
    """
    cm = np.asarray(cm)
    k = len(classes)
    if k == 0:
        raise ParameterError("classes is empty: no confusion matrix to draw")
    if cm.ndim != 2 or cm.shape != (k, k):
        raise ParameterError(f"cm must have shape ({k}, {k}) for {k} classes; got {cm.shape}")
    cm = np.nan_to_num(cm.astype(np.float64))
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        colours = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        vmax = 1.0
    else:
        colours = cm
        vmax = max(float(cm.max()), 1.0)
    image = ax.imshow(colours, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest",
                      aspect="auto" if k > 1 else "equal")
    fontsize = 9 if k <= 10 else max(5.0, 9 - 0.25 * (k - 10))
    for i in range(k):
        for j in range(k):
            if cm[i, j] == 0:
                continue
            value = cm[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.2g}"
            dark = colours[i, j] / vmax > 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    labels = [str(c) for c in classes]
    tick_size = "small" if k > 10 else "medium"
    ax.set_xticks(range(k), labels, rotation=90 if k > 6 else 0, fontsize=tick_size)
    ax.set_yticks(range(k), labels, fontsize=tick_size)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if colorbar:
        _colorbar(ax, image, fmt=None, label="fraction of true class" if normalize else "clips")
    return image


# ----------------------------------------------------------------------------- one file


def _file_title(path: str, head, *, sr_used: float, offset: float, n: int, silent: bool,
                padded_to: int | None) -> str:
    parts = [f"{head.sr} Hz", f"{head.duration:.2f} s",
             f"{head.channels} channel{'s' if head.channels != 1 else ''}",
             f"{head.format}/{head.subtype}"]
    title = f"{os.path.basename(path)}  -  " + ", ".join(parts)
    notes = []
    if offset > 0 or n < head.frames * sr_used / head.sr - 1:
        notes.append(f"excerpt {offset:.2f}-{offset + n / sr_used:.2f} s")
    if sr_used != head.sr:
        notes.append(f"analysed at {sr_used:g} Hz")
    if silent:
        notes.append("SILENT (RMS <= -80 dBFS)")
    if padded_to is not None:
        notes.append(f"shorter than n_fft: zero-padded to {padded_to} samples for analysis")
    return title + ("\n" + "; ".join(notes) if notes else "")


def show_file(
    path: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    sr: float | None = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    n_mfcc: int = 20,
    offset: float = 0.0,
    duration: float | None = None,
    top_db: float = 80.0,
    max_seconds: float = 600.0,
    dpi: int = 110,
) -> str:
    """Draw the 4-panel picture of one clip and write it as PNG.

    Panels: waveform (every channel), log-frequency power spectrogram in dB
    with a colour bar, log-mel spectrogram on a mel axis, MFCCs.  The title
    gives the file name, native sample rate, duration, channels and encoding.
    Spectrograms are in dB relative to the clip's maximum (``top_db`` range);
    a silent clip is drawn relative to 1.0 so it shows as dark, not as noise.

    Parameters
    ----------
    path : str or os.PathLike
        Any file :func:`soundclass.audio.load` reads.
    out_png : str or os.PathLike
        Where to write the picture (folders are created).
    sr : float, optional
        Analysis sample rate; ``None`` keeps the file's.
    n_fft, hop_length, n_mels, n_mfcc
        Feature settings (librosa's meaning).
    offset, duration : float
        Part of the file to show, in seconds.
    top_db : float
        Dynamic range of the spectrogram colours.
    max_seconds : float
        Without ``duration``, longer files are shown only up to this many
        seconds after ``offset`` (the title says so): a picture of hours of
        audio would be unreadable and costly.
    dpi : int
        Resolution of the PNG (the figure is 11 x 11 inches).

    Returns
    -------
    str
        ``out_png``.

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded.
    ParameterError
        Invalid settings.
    """
    from soundclass import audio
    from soundclass.dsp import features

    for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels),
                        ("n_mfcc", n_mfcc)):
        _positive(name, value, allow_float=False)
    if n_mfcc > n_mels:
        raise ParameterError(f"n_mfcc={n_mfcc} must be <= n_mels={n_mels}")
    _positive("top_db", top_db)
    _positive("max_seconds", max_seconds)
    path = os.fspath(path)
    head = audio.info(path)
    if duration is None and head.duration - offset > max_seconds:
        duration = max_seconds
    y, sr_used = audio.load(path, sr=sr, mono=False, offset=offset, duration=duration)
    mono = audio.to_mono(y)
    silent = audio.is_silent(y)
    n = mono.shape[-1]
    padded_to = None
    if n < n_fft:
        mono = np.pad(mono, (0, n_fft - n))
        padded_to = n_fft

    S = features.spectrogram(mono, n_fft=n_fft, hop_length=hop_length, power=2.0)
    mel = features.melspectrogram(S=S, sr=sr_used, n_mels=n_mels)
    S_db = features.power_to_db(S, ref=1.0 if silent else float(np.max(S)), top_db=top_db)
    mel_db = features.power_to_db(mel, ref=1.0 if silent else float(np.max(mel)), top_db=top_db)
    mfccs = features.mfcc(S=features.power_to_db(mel, top_db=top_db), n_mfcc=n_mfcc)

    fig = Figure(figsize=(11.0, 11.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 2, width_ratios=(60, 1), height_ratios=(0.8, 1, 1, 0.8))
    axes = [fig.add_subplot(grid[i, 0]) for i in range(4)]
    caxes = [fig.add_subplot(grid[i, 1]) for i in range(4)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    caxes[0].set_axis_off()
    db_range = {"vmin": -top_db, "vmax": 0.0}  # dB re the clip's maximum
    plot_waveform(y, sr=sr_used, ax=axes[0], offset=offset)
    axes[0].set_title("Waveform", loc="left", fontsize="medium")
    mesh = plot_spectrogram(S_db, sr=sr_used, hop_length=hop_length, ax=axes[1], y_axis="log",
                            colorbar=False, offset=offset, **db_range)
    fig.colorbar(mesh, cax=caxes[1], format=DB_FORMAT)
    axes[1].set_title(f"Power spectrogram (n_fft={n_fft}, hop_length={hop_length})",
                      loc="left", fontsize="medium")
    mesh = plot_mel(mel_db, sr=sr_used, hop_length=hop_length, ax=axes[2], colorbar=False,
                    offset=offset, **db_range)
    fig.colorbar(mesh, cax=caxes[2], format=DB_FORMAT)
    axes[2].set_title(f"Mel spectrogram (n_mels={n_mels})", loc="left", fontsize="medium")
    mesh = plot_mfcc(mfccs, sr=sr_used, hop_length=hop_length, ax=axes[3], colorbar=False,
                     offset=offset)
    fig.colorbar(mesh, cax=caxes[3])
    axes[3].set_title(f"MFCC (n_mfcc={n_mfcc})", loc="left", fontsize="medium")
    axes[0].set_xlim(offset, offset + max(n, 1) / sr_used)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.suptitle(_file_title(path, head, sr_used=sr_used, offset=offset, n=n, silent=silent,
                             padded_to=padded_to))
    return save_figure(fig, out_png, dpi=dpi)
