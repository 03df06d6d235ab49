"""Frequency scales and the mel filterbank, numerically equal to librosa's.

``mel`` is cached per parameter set (the returned array is read-only), so
extracting thousands of clips builds the filterbank once per process.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import scipy.sparse

from soundclass.errors import ParameterError, check_positive, check_positive_int

__all__ = [
    "fft_frequencies",
    "hz_to_mel",
    "mel",
    "mel_frequencies",
    "mel_sparse",
    "mel_to_hz",
]

# Slaney's auditory toolbox scale: linear below 1 kHz, logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(frequencies, *, htk: bool = False):
    """Convert Hz to mels (``librosa.hz_to_mel``).

    Parameters
    ----------
    frequencies : float or np.ndarray [shape=(n,)]
    htk : bool
        HTK formula ``2595 log10(1 + f/700)`` instead of Slaney's.

    Returns
    -------
    float or np.ndarray [shape=(n,)]
    """
    frequencies = np.asanyarray(frequencies)
    if htk:
        return 2595.0 * np.log10(1.0 + frequencies / 700.0)
    mels = frequencies / _F_SP
    log_part = frequencies >= _MIN_LOG_HZ
    safe = np.where(log_part, frequencies, _MIN_LOG_HZ)
    out = np.where(log_part, _MIN_LOG_MEL + np.log(safe / _MIN_LOG_HZ) / _LOGSTEP, mels)
    return out[()] if out.ndim == 0 else out


def mel_to_hz(mels, *, htk: bool = False):
    """Convert mels to Hz (``librosa.mel_to_hz``), the inverse of :func:`hz_to_mel`.

    Parameters
    ----------
    mels : float or np.ndarray [shape=(n,)]
    htk : bool

    Returns
    -------
    float or np.ndarray [shape=(n,)]
    """
    mels = np.asanyarray(mels)
    if htk:
        return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = _F_SP * mels
    log_part = mels >= _MIN_LOG_MEL
    out = np.where(log_part, _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL)), freqs)
    return out[()] if out.ndim == 0 else out


def mel_frequencies(n_mels: int = 128, *, fmin: float = 0.0, fmax: float = 11025.0, htk: bool = False) -> np.ndarray:
    """Centre frequencies of ``n_mels`` bands evenly spaced on the mel scale.

    Returns
    -------
    np.ndarray [shape=(n_mels,)]
        In Hz, from ``fmin`` to ``fmax`` inclusive.
    """
    mels = np.linspace(hz_to_mel(fmin, htk=htk), hz_to_mel(fmax, htk=htk), n_mels)
    return mel_to_hz(mels, htk=htk)


def fft_frequencies(*, sr: float = 22050, n_fft: int = 2048) -> np.ndarray:
    """Centre frequencies of the ``1 + n_fft // 2`` rfft bins.

    Returns
    -------
    np.ndarray [shape=(1 + n_fft // 2,)]
    """
    return np.fft.rfftfreq(n=n_fft, d=1.0 / sr)


def _mel_key(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype) -> tuple:
    """The checked filterbank arguments, normalised into the key of the caches below."""
    check_positive("sr", sr)
    for name, value in (("n_fft", n_fft), ("n_mels", n_mels)):
        check_positive_int(name, value)
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    if not 0.0 <= fmin < fmax:
        raise ParameterError(f"fmin={fmin!r} must be >= 0 and < fmax={fmax!r}")
    if norm not in ("slaney", None):
        raise ParameterError(f"norm={norm!r} must be 'slaney' or None")
    return sr, int(n_fft), int(n_mels), float(fmin), fmax, bool(htk), norm, np.dtype(dtype).name


@functools.lru_cache(maxsize=32)
def _mel_cached(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name) -> np.ndarray:
    weights = np.zeros((n_mels, 1 + n_fft // 2), dtype=dtype_name)
    fftfreqs = fft_frequencies(sr=sr, n_fft=n_fft)
    mel_f = mel_frequencies(n_mels + 2, fmin=fmin, fmax=fmax, htk=htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)  # (n_mels + 2, 1 + n_fft // 2)
    for i in range(n_mels):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        weights[i] = np.maximum(0, np.minimum(lower, upper))
    if norm == "slaney":  # constant energy per band
        enorm = 2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels])
        weights *= enorm[:, np.newaxis]
    if not np.all((mel_f[:-2] == 0) | (weights.max(axis=1) > 0)):
        warnings.warn(
            f"Empty filters detected in mel frequency basis (sr={sr}, n_fft={n_fft}, "
            f"n_mels={n_mels}): some channels will be all zero; try fewer mels or a larger n_fft",
            stacklevel=4,
        )
    weights.setflags(write=False)
    return weights


def mel(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    dtype=np.float32,
) -> np.ndarray:
    """Mel filterbank matrix, equal to ``librosa.filters.mel``.

    Parameters
    ----------
    sr : float
        Sample rate in Hz.
    n_fft : int
        FFT size.
    n_mels : int
        Number of bands.
    fmin, fmax : float
        Lowest and highest band edge in Hz (``fmax=None``: ``sr / 2``).
    htk : bool
        HTK mel scale instead of Slaney's.
    norm : {'slaney', None}
        ``'slaney'`` divides each triangle by its bandwidth (area normalisation).
    dtype : np.dtype

    Returns
    -------
    np.ndarray [shape=(n_mels, 1 + n_fft // 2)]
        Read-only (cached) array; copy it before modifying.
    """
    return _mel_cached(*_mel_key(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype))


@functools.lru_cache(maxsize=32)
def _mel_sparse_cached(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name) -> scipy.sparse.csr_array:
    return scipy.sparse.csr_array(_mel_cached(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype_name))


def mel_sparse(
    *,
    sr: float,
    n_fft: int,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    htk: bool = False,
    norm: str | None = "slaney",
    dtype=np.float32,
) -> scipy.sparse.csr_array:
    """:func:`mel` as a cached CSR matrix (each band touches only a few bins).

    Returns
    -------
    scipy.sparse.csr_array [shape=(n_mels, 1 + n_fft // 2)]
        Shared between callers: do not modify.
    """
    return _mel_sparse_cached(*_mel_key(sr, n_fft, n_mels, fmin, fmax, htk, norm, dtype))
