"""Uploaded audio bytes -> a mono clip: the one decoding seam of the web demo.

:func:`decode_upload` is the only place where ``serve`` decodes audio.  Today it
calls :func:`_decode_libsndfile` (libsndfile through ``soundfile``, what the demo
has always used); once :func:`soundclass.audio.load` reads in-memory uploads
(PyAV for WebM/Opus, MP4/AAC and the like), the one line marked ``SEAM`` below
becomes::

    return (*audio.load(io.BytesIO(data), sr=None, mono=False, max_seconds=max_seconds,
                        max_sr=max_sr, max_channels=max_channels), None)

and :func:`_decode_libsndfile` is deleted.  The third value is the duration of
the whole upload when the decoder knows it; with ``None`` a clip cut at
``max_seconds`` reports the analysed length as its ``duration`` and ``truncated``
means "at least ``max_seconds`` long".  Should ``audio.info`` accept file-likes, ``None``
becomes ``audio.info(io.BytesIO(data)).duration``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from soundclass.audio import check_audio
from soundclass.errors import AudioDecodeError, ParameterError

__all__ = ["DEFAULT_MAX_SECONDS", "MAX_SR", "MAX_CHANNELS", "Clip", "decode_upload"]

DEFAULT_MAX_SECONDS = 30.0
#: Largest native sample rate and channel count accepted (decoded size guard).
MAX_SR = 384_000
MAX_CHANNELS = 32


@dataclass(frozen=True, eq=False)
class Clip:
    """An uploaded clip, decoded and downmixed.

    Attributes
    ----------
    y : np.ndarray [shape=(n,)], float32
        The first ``max_seconds`` of the clip, mono, at the native rate.
    sr : int
        Native sample rate in Hz.
    channels : int
        Channels in the upload (before the downmix).
    duration : float
        Duration of the whole upload in seconds.
    truncated : bool
        Whether ``y`` is shorter than the upload.
    """

    y: np.ndarray
    sr: int
    channels: int
    duration: float
    truncated: bool


def decode_upload(
    data: bytes,
    *,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    max_sr: int = MAX_SR,
    max_channels: int = MAX_CHANNELS,
) -> Clip:
    """Decode an uploaded file from memory, keeping at most its first ``max_seconds``.

    Parameters
    ----------
    data : bytes
        A whole audio file.  Nothing is written to disk; no file name is used.
    max_seconds : float
        Only ``int(max_seconds * sr)`` frames are decoded.
    max_sr : int
        Largest native sample rate accepted, in Hz.
    max_channels : int
        Largest channel count accepted.

    Returns
    -------
    Clip

    Raises
    ------
    AudioDecodeError
        Empty, unreadable or corrupt data; sample rate or channel count out of
        range; no samples; non-finite samples.  ``path`` is ``None``.
    ParameterError
        ``max_seconds`` not positive.
    """
    if not max_seconds > 0:
        raise ParameterError(f"max_seconds={max_seconds!r} must be positive")
    if not data:
        raise AudioDecodeError(None, "empty upload (0 bytes)")
    y, sr, duration = _decode(data, max_seconds=max_seconds, max_sr=max_sr, max_channels=max_channels)
    # y: (n,) or (channels, n), as audio.load(..., mono=False) returns it
    channels = 1 if y.ndim == 1 else int(y.shape[0])
    mono = np.ascontiguousarray(y if y.ndim == 1 else y.mean(axis=0), dtype=np.float32)
    check_audio(mono)
    got = mono.shape[-1]
    if duration is None:  # the decoder does not know the whole length: at least what it gave
        duration = got / sr
        truncated = got >= max(1, int(max_seconds * sr))
    else:
        truncated = duration * sr > got
    return Clip(y=mono, sr=int(sr), channels=channels, duration=float(duration), truncated=bool(truncated))


def _decode(
    data: bytes, *, max_seconds: float, max_sr: int, max_channels: int
) -> tuple[np.ndarray, int, float | None]:
    """``(y [shape=(n,) or (channels, n)], native sr, whole-upload seconds or None)``."""
    return _decode_libsndfile(data, max_seconds=max_seconds, max_sr=max_sr, max_channels=max_channels)  # SEAM


def _decode_libsndfile(
    data: bytes, *, max_seconds: float, max_sr: int, max_channels: int
) -> tuple[np.ndarray, int, float]:
    """The demo's libsndfile decoder (moved from ``serve.decode_audio``), until ``audio.load`` takes bytes."""
    try:
        desc = sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as exc:
        detail = exc.error_string.strip().rstrip(".")
        raise AudioDecodeError(
            None, f"not a readable audio file: unknown, unsupported or corrupt format ({detail})"
        ) from None
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise AudioDecodeError(None, f"cannot be opened as audio ({exc})") from None
    with desc:
        sr, channels, frames = int(desc.samplerate), int(desc.channels), int(desc.frames)
        if not 0 < sr <= max_sr:
            raise AudioDecodeError(None, f"sample rate sr={sr} Hz is not in (0, {max_sr}]")
        if not 0 < channels <= max_channels:
            raise AudioDecodeError(None, f"channels={channels} is not in [1, {max_channels}]")
        if frames <= 0:
            raise AudioDecodeError(None, "contains no audio samples")
        limit = max(1, int(max_seconds * sr))
        wanted = min(frames, limit)
        try:
            y = desc.read(frames=wanted, dtype="float32", always_2d=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise AudioDecodeError(None, f"corrupt audio data, decoding failed ({exc})") from None
    got = y.shape[0]
    if got == 0:
        raise AudioDecodeError(None, "contains no decodable audio samples")
    if got < wanted:  # the header announced more than the data holds: keep what is there
        frames = got
    y = y[:, 0] if channels == 1 else y.T  # (n,) or (channels, n)
    return y, sr, frames / sr
