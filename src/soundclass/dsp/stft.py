"""The short-time Fourier transform, equal to librosa's, computed fast.

The STFT runs ``scipy.fft.rfft`` over blocks of frames (memory stays bounded
for long signals, and a block stays in a core's L2 cache); windows are cached
per parameter set.  :func:`stft` and :func:`spectrogram` accept batches
``(..., n)``; the checks and the block machinery (:func:`check_stft_params`,
:func:`float_signal`, :func:`gather_blocks`, :func:`spectrum_power`,
:func:`frame_count`) are shared with the mel projection of
:mod:`soundclass.dsp.features`.

Computation happens in the precision of the input (float32 signals: float32
FFT); the tolerances against librosa are stated in :mod:`soundclass.dsp.features`.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import scipy.fft
import scipy.signal

from soundclass.audio import check_audio
from soundclass.errors import ParameterError, check_positive, check_positive_int

__all__ = [
    "MAX_BLOCK_BYTES",
    "check_stft_params",
    "float_signal",
    "frame_count",
    "gather_blocks",
    "spectrogram",
    "spectrum_power",
    "stft",
]

#: Bytes of windowed frames transformed at once: small enough to stay in a
#: core's L2 cache, which makes the blocked STFT ~2x faster than one big rfft.
MAX_BLOCK_BYTES = 2**18

_PAD_MODES = ("constant", "edge", "linear_ramp", "reflect", "symmetric", "empty")


# ----------------------------------------------------------------------------- checks
def check_stft_params(*, n_fft, hop_length, win_length) -> tuple[int, int, int]:
    """``(n_fft, hop_length, win_length)`` checked, with librosa's defaults filled in.

    Parameters
    ----------
    n_fft : int
    hop_length : int or None
        ``None``: ``win_length // 4`` (refused when that is 0).
    win_length : int or None
        ``None``: ``n_fft``; at most ``n_fft``.

    Raises
    ------
    ParameterError
        Naming the parameter and its value.
    """
    n_fft = check_positive_int("n_fft", n_fft)
    win_length = n_fft if win_length is None else check_positive_int("win_length", win_length)
    if win_length > n_fft:
        raise ParameterError(f"win_length={win_length} must be <= n_fft={n_fft}")
    if hop_length is None:
        hop_length = win_length // 4
        if hop_length <= 0:
            raise ParameterError(
                f"hop_length=None defaults to win_length // 4 = 0 for win_length={win_length}; "
                "pass a positive hop_length"
            )
    hop_length = check_positive_int("hop_length", hop_length)
    return n_fft, hop_length, win_length


def float_signal(y: np.ndarray) -> np.ndarray:
    """``y`` checked (:func:`soundclass.audio.check_audio`) and in a precision the FFT keeps.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)], floating point

    Returns
    -------
    np.ndarray [shape=(..., n)], float32 or float64
        ``y`` itself when float32/float64, else cast to float32.

    Raises
    ------
    ParameterError
        ``y`` is not a real ndarray, or is not floating-point.
    AudioDecodeError
        NaN, infinite or huge samples.
    """
    check_audio(y, max_ndim=None)
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"audio must be floating-point, got dtype={y.dtype}")
    if y.dtype not in (np.float32, np.float64):
        y = y.astype(np.float32)
    return y


# ----------------------------------------------------------------------------- windows
def _window_values(window, win_length: int) -> np.ndarray:
    if callable(window):
        return np.asarray(window(win_length), dtype=np.float64)
    if isinstance(window, (str, tuple)) or np.isscalar(window):
        try:
            return scipy.signal.get_window(window, win_length, fftbins=True)
        except (ValueError, TypeError) as exc:
            raise ParameterError(f"window={window!r} is not a known window ({exc})") from None
    if isinstance(window, (np.ndarray, list)):
        if len(window) != win_length:
            raise ParameterError(f"window has length {len(window)}, expected win_length={win_length}")
        return np.asarray(window, dtype=np.float64)
    raise ParameterError(f"window={window!r} must be a name, a tuple, a callable or an array")


def _pad_center(w: np.ndarray, n_fft: int) -> np.ndarray:
    lpad = (n_fft - w.size) // 2
    return np.pad(w, (lpad, n_fft - w.size - lpad))


@functools.lru_cache(maxsize=32)
def _cached_window(window, win_length: int, n_fft: int, dtype_name: str) -> np.ndarray:
    w = _pad_center(_window_values(window, win_length), n_fft).astype(dtype_name)
    w.setflags(write=False)
    return w


def _fft_window(window, win_length: int, n_fft: int, dtype) -> np.ndarray:
    """The analysis window zero-padded to ``n_fft``, shape (n_fft,)."""
    dtype_name = np.dtype(dtype).name
    if isinstance(window, (str, tuple)):
        try:
            return _cached_window(window, win_length, n_fft, dtype_name)
        except TypeError:  # unhashable tuple contents
            pass
    return _pad_center(_window_values(window, win_length), n_fft).astype(dtype_name)


# ----------------------------------------------------------------------------- framing
def _frames(y: np.ndarray, *, n_fft: int, hop_length: int, center: bool, pad_mode: str) -> np.ndarray:
    """Strided view of frames, shape (..., t, n_fft)."""
    if center:
        if pad_mode not in _PAD_MODES:
            raise ParameterError(f"pad_mode={pad_mode!r} must be one of {_PAD_MODES}")
        if n_fft > y.shape[-1]:
            warnings.warn(
                f"n_fft={n_fft} is too large for input signal of length={y.shape[-1]}",
                stacklevel=3,
            )
        pad = [(0, 0)] * (y.ndim - 1) + [(n_fft // 2, n_fft // 2)]
        try:
            y = np.pad(y, pad, mode=pad_mode)
        except ValueError as exc:
            raise ParameterError(
                f"pad_mode={pad_mode!r} cannot pad a signal of length {y.shape[-1]} ({exc})"
            ) from None
    elif n_fft > y.shape[-1]:
        raise ParameterError(
            f"n_fft={n_fft} is too large for uncentered analysis of input signal of length={y.shape[-1]}"
        )
    return np.lib.stride_tricks.sliding_window_view(y, n_fft, axis=-1)[..., ::hop_length, :]


def _spectrum_blocks(
    y: np.ndarray, *, n_fft: int, hop_length: int, win_length: int, window, center: bool, pad_mode: str
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(start, stop, spectrum)`` of frames ``start:stop``; spectrum (..., bins, stop - start)."""
    frames = _frames(y, n_fft=n_fft, hop_length=hop_length, center=center, pad_mode=pad_mode)
    fft_window = _fft_window(window, win_length, n_fft, y.dtype)
    n_frames = frames.shape[-2]
    batch = int(np.prod(frames.shape[:-2], dtype=np.int64))
    per_block = max(1, MAX_BLOCK_BYTES // (n_fft * y.dtype.itemsize * max(batch, 1)))
    for start in range(0, n_frames, per_block):
        stop = min(start + per_block, n_frames)
        windowed = np.swapaxes(frames[..., start:stop, :] * fft_window, -1, -2)  # (..., n_fft, nb)
        # rfft along the strided axis writes (..., bins, nb) directly, C-contiguous
        yield start, stop, scipy.fft.rfft(windowed, axis=-2, overwrite_x=True)


def spectrum_power(spec: np.ndarray, *, power: float) -> np.ndarray:
    """``|spec| ** power``, without the square root for ``power=2``.

    Parameters
    ----------
    spec : np.ndarray [shape=(..., bins, t)], complex
    power : float
        1 for magnitude, 2 for power.

    Returns
    -------
    np.ndarray [shape=(..., bins, t)], real
    """
    if power == 2.0:
        return np.square(spec.real) + np.square(spec.imag)
    mag = np.abs(spec)
    return mag if power == 1.0 else mag**power


def gather_blocks(
    y: np.ndarray, transform: Callable[[np.ndarray], np.ndarray], *, rows: int, dtype,
    n_fft: int, hop_length: int, win_length: int, window, center: bool, pad_mode: str,
) -> np.ndarray:
    """``transform`` of every block of STFT frames of ``y``, gathered in one array.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
        Checked by :func:`float_signal`.
    transform : callable
        Maps a spectrum block [shape=(..., 1 + n_fft // 2, nb)] to [shape=(..., rows, nb)].
    rows : int
    dtype : numpy dtype
        Of the result.
    n_fft, hop_length, win_length, window, center, pad_mode
        As in :func:`stft`, checked by :func:`check_stft_params`.

    Returns
    -------
    np.ndarray [shape=(..., rows, t)]
        ``t = frame_count(n, ...)``.
    """
    n_frames = frame_count(y.shape[-1], n_fft=n_fft, hop_length=hop_length, center=center)
    out = np.empty((*y.shape[:-1], rows, max(n_frames, 0)), dtype=dtype)
    for start, stop, spec in _spectrum_blocks(
        y, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode=pad_mode,
    ):
        out[..., start:stop] = transform(spec)
    return out


# ----------------------------------------------------------------------------- public API
def stft(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
) -> np.ndarray:
    """Short-time Fourier transform, equal to ``librosa.stft``.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)], floating point
    n_fft : int
        FFT size; ``1 + n_fft // 2`` frequency bins.
    hop_length : int or None
        Samples between frames (``None``: ``win_length // 4``).
    win_length : int or None
        Window length, zero-padded to ``n_fft`` (``None``: ``n_fft``).
    window : str, tuple, callable or np.ndarray
        As in ``scipy.signal.get_window`` (periodic).
    center : bool
        Pad ``n_fft // 2`` samples on both sides so frame ``t`` is centred at ``t * hop_length``.
    pad_mode : str
        ``np.pad`` mode for centring.

    Returns
    -------
    np.ndarray [shape=(..., 1 + n_fft // 2, t)], complex64 (complex128 for float64 input)
        ``t = 1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length`` when centred.
    """
    y = float_signal(y)
    n_fft, hop_length, win_length = check_stft_params(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    return gather_blocks(
        y, lambda spec: spec, rows=1 + n_fft // 2,
        dtype=np.complex64 if y.dtype == np.float32 else np.complex128,
        n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode=pad_mode,
    )


def frame_count(n: int, *, n_fft: int, hop_length: int, center: bool) -> int:
    """STFT frames of ``n`` samples: ``1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length`` when centred."""
    padded = n + 2 * (n_fft // 2) if center else n
    return 1 + (padded - n_fft) // hop_length


def spectrogram(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int | None = None,
    win_length: int | None = None,
    window="hann",
    center: bool = True,
    pad_mode: str = "constant",
    power: float = 2.0,
) -> np.ndarray:
    """Magnitude spectrogram ``|stft(y)| ** power``.

    Parameters
    ----------
    y : np.ndarray [shape=(..., n)]
    n_fft, hop_length, win_length, window, center, pad_mode
        As in :func:`stft`.
    power : float
        1 for magnitude, 2 for power.

    Returns
    -------
    np.ndarray [shape=(..., 1 + n_fft // 2, t)], float32 (float64 for float64 input)
    """
    power = check_positive("power", power)
    y = float_signal(y)
    n_fft, hop_length, win_length = check_stft_params(n_fft=n_fft, hop_length=hop_length, win_length=win_length)
    return gather_blocks(
        y, lambda spec: spectrum_power(spec, power=power), rows=1 + n_fft // 2, dtype=y.dtype,
        n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=center, pad_mode=pad_mode,
    )
