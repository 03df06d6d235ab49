"""Pictures of one signal: waveform, spectrogram, mel spectrogram, MFCC.

Every ``plot_*`` function draws on an ``ax`` it is given (or a new figure's)
and returns the main artist; none calls ``show()``.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from soundclass.errors import ParameterError, check_int, check_positive, check_positive_int
from soundclass.plots.axes import (
    MAX_COLUMNS,
    Y_AXES,
    axis_hz_to_mel,
    axis_mel_to_hz,
    check_2d,
    db_limits,
    fft_edges,
    finite_for_display,
    mel_edges,
    pool_rows,
    pool_time,
    set_hz_ticks,
    time_edges,
)
from soundclass.plots.figure import DB_FORMAT, MFCC_CMAP, SPEC_CMAP, add_colorbar

__all__ = ["plot_mel", "plot_mfcc", "plot_spectrogram", "plot_waveform"]


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
    check_positive("sr", sr)
    check_int("max_points", max_points, low=4)
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
    S = finite_for_display(S_db)
    vmin, vmax = db_limits(S, vmin, vmax)
    t_edges = offset + time_edges(S.shape[1], sr=sr, hop_length=hop_length)
    if S.shape[1] == 0:  # shorter than one frame: draw one empty column
        S = np.full((S.shape[0], 1), vmin)
        t_edges = np.array([offset, offset + hop_length / float(sr)])
    S, t_edges = pool_time(S, t_edges, MAX_COLUMNS)
    S, freq_edges = pool_rows(S, freq_edges, ax)
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
    check_positive("sr", sr)
    check_positive_int("hop_length", hop_length)
    if y_axis not in Y_AXES:
        raise ParameterError(f"y_axis={y_axis!r} must be one of {Y_AXES}")
    S_db = check_2d("S_db", S_db)
    nyquist = sr / 2.0
    lo = 0.0 if fmin is None else float(fmin)
    hi = nyquist if fmax is None else float(fmax)
    if not 0.0 <= lo < hi:
        raise ParameterError(f"fmin={fmin!r} must be >= 0 and < fmax={hi!r}")
    if y_axis == "mel":
        if hi > nyquist + 1e-9:
            raise ParameterError(f"fmax={fmax!r} must be <= sr/2={nyquist!r}")
        edges = mel_edges(S_db.shape[0], fmin=lo, fmax=hi, htk=htk)
        ax.set_yscale("function", functions=(lambda f: axis_hz_to_mel(f, htk=htk),
                                             lambda m: axis_mel_to_hz(m, htk=htk)))
        view = (lo, hi)
    else:
        edges = fft_edges(S_db.shape[0], sr=sr)
        if y_axis == "log":
            ax.set_yscale("symlog", base=2, linthresh=64.0, linscale=0.5)
        view = (lo, min(hi, nyquist))
    mesh = _mesh(S_db, edges, sr=sr, hop_length=hop_length, ax=ax, cmap=cmap,
                 vmin=vmin, vmax=vmax, offset=offset)
    ax.set_ylim(*view)
    set_hz_ticks(ax, *view)
    if colorbar:
        add_colorbar(ax, mesh, fmt=DB_FORMAT)
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
    check_positive("sr", sr)
    check_positive_int("hop_length", hop_length)
    M = finite_for_display(check_2d("M", M))
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
        add_colorbar(ax, mesh, fmt=None)
    return mesh
