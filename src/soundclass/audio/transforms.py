"""Signal transforms of the loader: channel downmix and soxr resampling, like librosa.

Both re-check their output (:func:`~soundclass.audio.checks.check_audio`): a
transform must never hand on a non-finite or huge sample it created.
"""

from __future__ import annotations

import math
import os

import numpy as np
import soxr

from soundclass.audio.checks import check_audio, check_size
from soundclass.errors import ParameterError

__all__ = ["resample", "resampled_length", "to_mono"]


def to_mono(y: np.ndarray, *, path: str | os.PathLike | None = None) -> np.ndarray:
    """Average the channels, like ``librosa.to_mono``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (..., channels, n)]
    path : str, optional
        Source name for error messages.

    Returns
    -------
    np.ndarray [shape=(n,)]
    """
    check_audio(y, path=path, max_ndim=None)
    if y.ndim > 1:
        y = np.mean(y, axis=tuple(range(y.ndim - 1)))
        check_audio(y, path=path, max_ndim=None)
    return y


def resampled_length(n: int, *, orig_sr: float, target_sr: float) -> int:
    """Frames :func:`resample` returns for ``n`` input frames: ``ceil(n * target_sr / orig_sr)``."""
    if orig_sr == target_sr:
        return int(n)
    return int(math.ceil(n * float(target_sr) / orig_sr))


def resample(
    y: np.ndarray,
    *,
    orig_sr: float,
    target_sr: float,
    max_bytes: int | None = None,
    path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Resample along the last axis with soxr HQ, like ``librosa.resample(res_type='soxr_hq')``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)], floating point
    orig_sr, target_sr : float
        Sample rates in Hz.
    max_bytes : int or None
        Refuse (before allocating anything) an output larger than this.
    path : str, optional
        Source name for error messages.

    Returns
    -------
    np.ndarray [shape=(..., ceil(n * target_sr / orig_sr))]
        Same dtype as ``y``.

    Raises
    ------
    ParameterError
        Non-positive rates, non-float ``y``.
    AudioDecodeError
        Output above ``max_bytes``; non-finite or huge samples in or out.
    """
    check_audio(y, path=path)
    for name, value in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.number))
            or not 0 < value < math.inf
        ):
            raise ParameterError(f"{name}={value!r} must be a positive number")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"resample needs floating-point audio, got dtype={y.dtype}")
    if orig_sr == target_sr:
        return y
    n_out = resampled_length(y.shape[-1], orig_sr=orig_sr, target_sr=target_sr)
    channels = 1 if y.ndim == 1 else y.shape[0]
    check_size(
        "<memory>" if path is None else os.fspath(path),
        frames=n_out,
        channels=channels,
        itemsize=y.dtype.itemsize,
        max_bytes=max_bytes,
        what=f"resampled to {target_sr:g} Hz",
    )
    if y.ndim == 1:
        y_hat = soxr.resample(y, orig_sr, target_sr, quality="HQ")
    else:  # soxr takes (frames, channels): every channel with the same filter
        y_hat = soxr.resample(np.ascontiguousarray(y.T), orig_sr, target_sr, quality="HQ").T
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[..., :n_out]
    elif y_hat.shape[-1] < n_out:
        pad = [(0, 0)] * (y_hat.ndim - 1) + [(0, n_out - y_hat.shape[-1])]
        y_hat = np.pad(y_hat, pad)
    y_hat = np.ascontiguousarray(y_hat, dtype=y.dtype)
    check_audio(y_hat, path=path)
    return y_hat
