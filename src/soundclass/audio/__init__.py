"""Audio input: decoding with soundfile, resampling with soxr, validity checks.

:func:`load` follows ``librosa.load`` (``res_type='soxr_hq'``): the same
offset/duration arithmetic, the same downmix (mean over channels) and the same
resampler, so its output matches librosa's.  Unlike librosa it never falls
back to audioread and turns every kind of unusable file into an
:class:`~soundclass.errors.AudioDecodeError` that names the file and says why.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import soxr

from soundclass.errors import AudioDecodeError, ParameterError

__all__ = [
    "AudioInfo",
    "MAX_DECODED_BYTES",
    "check_audio",
    "info",
    "is_silent",
    "load",
    "resample",
    "to_mono",
]

#: Largest decoded signal :func:`load` produces by default (bytes); a guard
#: against corrupt headers announcing absurd lengths and against huge files.
MAX_DECODED_BYTES = 2 * 2**30

# libsndfile logs "data : 44100 (should be 22028)" when a RIFF/AIFF header
# announces more audio than the file holds.
_SHORT_DATA = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes streaming writers put in headers when the length is unknown.
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8}


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says.

    Attributes
    ----------
    path : str
    sr : int
        Native sample rate in Hz.
    channels : int
    frames : int
        Samples per channel.
    duration : float
        ``frames / sr`` in seconds.
    format : str
        Container, e.g. ``'WAV'``, ``'FLAC'``, ``'OGG'``.
    subtype : str
        Encoding, e.g. ``'PCM_16'``, ``'FLOAT'``, ``'VORBIS'``.
    """

    path: str
    sr: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str


def _open(path: str | os.PathLike) -> sf.SoundFile:
    """Open ``path`` with soundfile, turning every failure into AudioDecodeError."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise AudioDecodeError(path, "file not found")
    if os.path.isdir(path):
        raise AudioDecodeError(path, "is a directory, not an audio file")
    if os.path.getsize(path) == 0:
        raise AudioDecodeError(path, "empty file (0 bytes)")
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        detail = exc.error_string.strip().rstrip(".")
        if "does not exist" in detail:  # libsndfile's words for some unparsable MP3s
            detail = "no decoder recognises its contents"
        raise AudioDecodeError(
            path, f"not a readable audio file: unknown, unsupported or corrupt format ({detail})"
        ) from None
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise AudioDecodeError(path, f"cannot be opened as audio ({exc})") from None


def _truncation(desc: sf.SoundFile) -> str | None:
    """Why libsndfile's log says the header announces more data than present."""
    match = _SHORT_DATA.search(desc.extra_info)
    if match is None:
        return None
    announced, present = int(match.group(1)), int(match.group(2))
    if announced in _UNKNOWN_SIZES or present >= announced:
        return None
    return f"truncated or corrupt: header announces {announced} bytes of audio, the file holds {present}"


def info(path: str | os.PathLike) -> AudioInfo:
    """Header information of an audio file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioDecodeError
        Missing, empty or unreadable file.
    """
    with _open(path) as desc:
        sr = int(desc.samplerate)
        frames = int(desc.frames)
        return AudioInfo(
            path=os.fspath(path),
            sr=sr,
            channels=int(desc.channels),
            frames=frames,
            duration=frames / sr if sr > 0 else 0.0,
            format=desc.format,
            subtype=desc.subtype,
        )


def check_audio(y: np.ndarray, *, path: str | os.PathLike | None = None, max_ndim: int | None = 2) -> None:
    """The one validity check for signals, shared by loading and features.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        The signal.  ``max_ndim=None`` allows any leading batch shape ``(..., n)``.
    path : str or os.PathLike, optional
        The file the signal came from, for the error message.
    max_ndim : int or None
        Largest number of dimensions accepted.

    Raises
    ------
    ParameterError
        ``y`` is not a real numeric ndarray, or has the wrong number of dimensions.
    AudioDecodeError
        ``y`` contains NaN or infinite samples.
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
    if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y.reshape(-1)))
        kind = "NaN" if np.isnan(y.reshape(-1)[bad[0]]) else "infinite"
        raise AudioDecodeError(
            path, f"contains {bad.size} non-finite sample(s) (first: {kind} at flat index {bad[0]})"
        )


def to_mono(y: np.ndarray) -> np.ndarray:
    """Average the channels, like ``librosa.to_mono``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]

    Returns
    -------
    np.ndarray [shape=(n,)]
    """
    check_audio(y, max_ndim=None)
    if y.ndim > 1:
        y = np.mean(y, axis=tuple(range(y.ndim - 1)))
    return y


def resample(y: np.ndarray, *, orig_sr: float, target_sr: float) -> np.ndarray:
    """Resample along the last axis with soxr HQ, like ``librosa.resample(res_type='soxr_hq')``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)], floating point
    orig_sr, target_sr : float
        Sample rates in Hz.

    Returns
    -------
    np.ndarray [shape=(..., ceil(n * target_sr / orig_sr))]
        Same dtype as ``y``.
    """
    check_audio(y)
    for name, value in (("orig_sr", orig_sr), ("target_sr", target_sr)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value > 0:
            raise ParameterError(f"{name}={value!r} must be a positive number")
    if not np.issubdtype(y.dtype, np.floating):
        raise ParameterError(f"resample needs floating-point audio, got dtype={y.dtype}")
    if orig_sr == target_sr:
        return y
    n_out = int(np.ceil(y.shape[-1] * float(target_sr) / orig_sr))
    if y.ndim == 1:
        y_hat = soxr.resample(y, orig_sr, target_sr, quality="HQ")
    else:  # soxr takes (frames, channels): every channel with the same filter
        y_hat = soxr.resample(np.ascontiguousarray(y.T), orig_sr, target_sr, quality="HQ").T
    if y_hat.shape[-1] > n_out:
        y_hat = y_hat[..., :n_out]
    elif y_hat.shape[-1] < n_out:
        pad = [(0, 0)] * (y_hat.ndim - 1) + [(0, n_out - y_hat.shape[-1])]
        y_hat = np.pad(y_hat, pad)
    return np.ascontiguousarray(y_hat, dtype=y.dtype)


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


def _frame_range(
    path: str, desc: sf.SoundFile, offset: float, duration: float | None
) -> tuple[int, int]:
    """``(start, n_frames)`` for an offset/duration in seconds, as librosa computes them."""
    sr_native = desc.samplerate
    total = desc.frames
    start = int(offset * sr_native) if offset else 0
    if start >= total:
        raise AudioDecodeError(
            path,
            f"offset={offset} s is beyond the end of the audio ({total / sr_native:.3f} s)",
        )
    available = total - start
    n_frames = available if duration is None else min(int(duration * sr_native), available)
    if n_frames <= 0:
        raise AudioDecodeError(path, f"duration={duration} s selects no samples at sr={sr_native}")
    return start, n_frames


def _read(
    path: str, desc: sf.SoundFile, start: int, n_frames: int, dtype: np.dtype, mono: bool
) -> np.ndarray:
    """Decode ``n_frames`` from ``start``: shape (n,) if mono else (channels, n)."""
    channels = desc.channels
    try:
        if start and desc.seekable():
            desc.seek(start)
        elif start:  # e.g. GSM 6.10 in WAV: decode and drop the frames before the offset
            desc.read(frames=start, dtype="int16", always_2d=True)
        if mono and channels > 1:
            # Sum channel columns one by one (numpy's axis=1 reduction over a few
            # interleaved channels is ~10x slower), then divide once: bit-identical
            # to librosa's ``np.mean(y, axis=0)``.  PCM_16 is read as int16 (half
            # the bytes); k / 32768 sums are exact in float32, as libsndfile's are.
            pcm16 = desc.subtype == "PCM_16"
            raw = desc.read(frames=n_frames, dtype="int16" if pcm16 else dtype.name, always_2d=True)
            raw = raw.astype(dtype, copy=False)  # contiguous cast: strided int casts are slow
            y = raw[:, 0] + raw[:, 1]
            for c in range(2, channels):
                y += raw[:, c]
            if pcm16:
                y *= dtype.type(1.0 / 32768.0)
            y /= dtype.type(channels)
        else:
            y = desc.read(frames=n_frames, dtype=dtype.name, always_2d=True).T
            if channels == 1:
                y = y[0]  # librosa gives (n,) for single-channel files, mono or not
    except (RuntimeError, ValueError, OSError) as exc:
        raise AudioDecodeError(path, f"corrupt audio data, decoding failed ({exc})") from None
    got = y.shape[-1]
    if got == 0:
        raise AudioDecodeError(path, "corrupt: no audio could be decoded")
    # For MP3 the header length is only mpg123's estimate (VBR files without a
    # Xing header): a short read there is not evidence of damage; keep what decoded.
    if got < n_frames and desc.format != "MP3":
        raise AudioDecodeError(
            path, f"truncated or corrupt: expected {n_frames} frames from the header, decoded {got}"
        )
    return np.ascontiguousarray(y)


def load(
    path: str | os.PathLike,
    *,
    sr: float | None = 22050,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    dtype: np.dtype | type = np.float32,
    max_bytes: int | None = MAX_DECODED_BYTES,
) -> tuple[np.ndarray, float]:
    """Decode an audio file like ``librosa.load(..., res_type='soxr_hq')``.

    Parameters
    ----------
    path : str or os.PathLike
        Any format libsndfile reads (WAV in every subtype, FLAC, OGG/Vorbis,
        MP3 with libsndfile >= 1.1, AIFF, ...).
    sr : float or None
        Target sample rate; ``None`` keeps the native rate.
    mono : bool
        Average the channels.
    offset : float
        Start reading this many seconds in (``int(offset * sr_native)`` frames).
    duration : float or None
        Read at most this many seconds (``int(duration * sr_native)`` frames).
    dtype : np.float32 or np.float64
    max_bytes : int or None
        Refuse to decode more than this many bytes of samples (``None``: no limit).

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n)]
        ``(n,)`` if ``mono`` or the file has one channel, else ``(channels, n)``.
    sr : float
        Sample rate of ``y`` (the native rate, an ``int``, when ``sr=None``).

    Raises
    ------
    AudioDecodeError
        Missing, empty, unreadable, truncated or non-finite file; offset past the end;
        larger than ``max_bytes``.  (MP3 lengths are estimates: a short MP3 read
        returns what decoded, as librosa does.)
    ParameterError
        Invalid ``sr``, ``offset``, ``duration`` or ``dtype``.
    """
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype={dtype} must be float32 or float64")
    if sr is not None and (isinstance(sr, bool) or not sr > 0):
        raise ParameterError(f"sr={sr!r} must be a positive number or None")
    if not offset >= 0:
        raise ParameterError(f"offset={offset!r} must be >= 0 seconds")
    if duration is not None and not duration > 0:
        raise ParameterError(f"duration={duration!r} must be positive or None")
    path = os.fspath(path)
    with _open(path) as desc:
        if desc.frames <= 0:
            raise AudioDecodeError(path, "contains no audio (0 frames)")
        if desc.samplerate <= 0:
            raise AudioDecodeError(path, f"invalid sample rate {desc.samplerate} in the header")
        reason = _truncation(desc)
        if reason is not None:
            raise AudioDecodeError(path, reason)
        start, n_frames = _frame_range(path, desc, offset, duration)
        n_bytes = n_frames * desc.channels * dtype.itemsize
        if max_bytes is not None and n_bytes > max_bytes:
            raise AudioDecodeError(
                path,
                f"too large: {n_frames} frames x {desc.channels} channels would decode to "
                f"{n_bytes / 2**20:.0f} MiB (> max_bytes={max_bytes}); pass duration= to read a part",
            )
        y = _read(path, desc, start, n_frames, dtype, mono)
        sr_native = desc.samplerate
    check_audio(y, path=path)
    if sr is None:
        return y, sr_native
    return resample(y, orig_sr=sr_native, target_sr=sr), sr
