"""Validity checks and bounds shared by every decoder and transform.

One home for what "a usable signal" means: real numeric samples, finite and
below :data:`MAX_ABS` (larger values overflow soxr), native sample rates in
[:data:`MIN_SR`, :data:`MAX_SR`], and decoded sizes below a byte cap.
"""

from __future__ import annotations

import math
import os

import numpy as np

from soundclass.errors import AudioDecodeError, ParameterError

__all__ = [
    "MAX_ABS",
    "MAX_DECODED_BYTES",
    "MAX_SR",
    "MIN_SR",
    "check_audio",
    "check_size",
    "check_stream",
    "frame_range",
    "is_silent",
]

#: Largest decoded signal :func:`~soundclass.audio.load` produces by default
#: (bytes), native and after resampling; a guard against corrupt headers
#: announcing absurd lengths or sample rates and against huge files.
MAX_DECODED_BYTES = 2 * 2**30

#: Native sample rates outside ``[MIN_SR, MAX_SR]`` Hz are refused as corrupt.
MIN_SR = 1000
MAX_SR = 768_000

#: Samples with ``abs(y) > MAX_ABS`` are refused: soxr overflows on them.
MAX_ABS = 1e30


def check_audio(
    y: np.ndarray,
    *,
    path: str | os.PathLike | None = None,
    max_ndim: int | None = 2,
    max_abs: float | None = MAX_ABS,
) -> None:
    """The one validity check for signals, shared by loading and features.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        The signal.  ``max_ndim=None`` allows any leading batch shape ``(..., n)``.
    path : str or os.PathLike, optional
        The file (or source name, e.g. ``'<upload>'``) the signal came from,
        for the error message.
    max_ndim : int or None
        Largest number of dimensions accepted.
    max_abs : float or None
        Largest magnitude accepted for floating-point samples (``None``: only
        finiteness is checked).

    Raises
    ------
    ParameterError
        ``y`` is not a real numeric ndarray, or has the wrong number of dimensions.
    AudioDecodeError
        ``y`` contains NaN, infinite or huge (``abs > max_abs``) samples.
    """
    where = "<memory>" if path is None else os.fspath(path)
    if not isinstance(y, np.ndarray):
        raise ParameterError(f"{where}: audio must be a numpy ndarray, got {type(y).__name__}")
    if y.dtype == np.bool_ or not (
        np.issubdtype(y.dtype, np.floating) or np.issubdtype(y.dtype, np.integer)
    ):
        raise ParameterError(f"{where}: audio must be real-valued numeric, got dtype={y.dtype}")
    if y.ndim == 0 or (max_ndim is not None and y.ndim > max_ndim):
        allowed = {None: "at least 1-D", 1: "1-D (mono)", 2: "1-D or 2-D (channels, n)"}.get(
            max_ndim, f"1-D to {max_ndim}-D"
        )
        raise ParameterError(f"{where}: audio must be {allowed}, got shape={y.shape}")
    if not np.issubdtype(y.dtype, np.floating) or y.size == 0:
        return
    limit = np.inf if max_abs is None else max_abs
    lo, hi = y.min(), y.max()  # two passes, no temporary; NaN propagates
    if -limit <= lo and hi <= limit:
        return
    flat = y.reshape(-1)
    finite = np.isfinite(flat)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        kind = "NaN" if np.isnan(flat[bad[0]]) else "infinite"
        raise AudioDecodeError(
            path, f"contains {bad.size} non-finite sample(s) (first: {kind} at flat index {bad[0]})"
        )
    bad = np.flatnonzero(np.abs(flat) > limit)
    raise AudioDecodeError(
        path,
        f"contains {bad.size} huge sample(s) with |value| > {limit:g} "
        f"(first: {float(flat[bad[0]]):g} at flat index {bad[0]})",
    )


def is_silent(y: np.ndarray, *, threshold_db: float = -80.0) -> bool:
    """Whether the RMS level of ``y`` is at or below ``threshold_db`` dBFS.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        Floating-point signal in [-1, 1].
    threshold_db : float

    Returns
    -------
    bool
        ``True`` for all-zero and empty signals.
    """
    check_audio(y)
    if y.size == 0:
        return True
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    if rms == 0.0:
        return True
    return 20.0 * math.log10(rms) <= threshold_db


def check_stream(
    name: str, *, sr: float, channels: int, max_sr: float | None, max_channels: int | None
) -> None:
    """Refuse native sample rates and channel counts no real recording has.

    Raises
    ------
    AudioDecodeError
        ``sr`` outside ``[MIN_SR, min(MAX_SR, max_sr)]``, ``channels`` outside
        ``[1, max_channels]``.
    """
    top = MAX_SR if max_sr is None else min(MAX_SR, max_sr)
    if not MIN_SR <= sr <= top:
        raise AudioDecodeError(
            name, f"sample rate sr={sr:g} Hz in the header is outside [{MIN_SR}, {top:g}] Hz"
        )
    if channels < 1 or (max_channels is not None and channels > max_channels):
        top_ch = "" if max_channels is None else f", {max_channels}"
        raise AudioDecodeError(name, f"channels={channels} is outside [1{top_ch}]")


def check_size(
    name: str, *, frames: int, channels: int, itemsize: int, max_bytes: int | None, what: str
) -> None:
    """Refuse a signal of ``frames x channels`` samples above ``max_bytes`` bytes.

    ``what`` says which signal (e.g. ``'decoded'``, ``'resampled to 22050 Hz'``).
    """
    n_bytes = frames * channels * itemsize
    if max_bytes is not None and n_bytes > max_bytes:
        raise AudioDecodeError(
            name,
            f"too large: {frames} frames x {channels} channels {what} would take "
            f"{n_bytes / 2**20:.0f} MiB (> max_bytes={max_bytes}); pass duration= to read a part",
        )


def frame_range(
    name: str,
    *,
    sr: int,
    total: int | None,
    offset: float,
    duration: float | None,
    max_seconds: float | None,
) -> tuple[int, int | None]:
    """``(start, n_frames)`` for an offset/duration in seconds, as librosa computes them.

    ``total`` is the number of frames the source holds (``None`` if unknown:
    then ``n_frames`` is ``None`` for "to the end" unless ``duration`` or
    ``max_seconds`` bound it).  ``max_seconds`` caps ``n_frames`` at
    ``max(1, int(max_seconds * sr))``.

    Raises
    ------
    AudioDecodeError
        ``offset`` at or past the end; a selection of no samples.
    """
    start = int(offset * sr) if offset else 0
    if total is not None and start >= total:
        raise AudioDecodeError(
            name, f"offset={offset} s is beyond the end of the audio ({total / sr:.3f} s)"
        )
    n_frames = None if total is None else total - start
    if duration is not None:
        wanted = int(duration * sr)
        n_frames = wanted if n_frames is None else min(wanted, n_frames)
    if max_seconds is not None:
        limit = max(1, int(max_seconds * sr))
        n_frames = limit if n_frames is None else min(limit, n_frames)
    if n_frames is not None and n_frames <= 0:
        raise AudioDecodeError(name, f"duration={duration} s selects no samples at sr={sr}")
    return start, n_frames
