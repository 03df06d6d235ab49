"""Uploaded audio bytes -> a mono clip: the one decoding seam of the web demo.

:func:`decode_upload` is the only place where ``serve`` decodes audio, and it
calls the one decoder, :func:`soundclass.audio.decode`, on the bytes in memory
(libsndfile for WAV/FLAC/OGG/MP3..., PyAV for what browsers record:
WebM/Opus, MP4/AAC), with the upload caps; nothing is written to disk.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from soundclass import audio
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
        Whether ``y`` was cut at ``max_seconds`` (the upload is longer).
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
        range; no samples; non-finite samples.  ``path`` is ``'<upload>'``.
    ParameterError
        ``max_seconds`` not positive.
    """
    if not max_seconds > 0:
        raise ParameterError(f"max_seconds={max_seconds!r} must be positive")
    if not data:
        raise AudioDecodeError("<upload>", "empty upload (0 bytes)")
    out = audio.decode(io.BytesIO(data), sr=None, mono=False, max_seconds=max_seconds,
                       max_sr=max_sr, max_channels=max_channels, name="<upload>")
    mono = np.ascontiguousarray(audio.to_mono(out.y), dtype=np.float32)
    check_audio(mono, path="<upload>")
    # Cut at max_seconds.  Not a cut: a compressed stream's frame count being an
    # estimate a few frames above what decodes, or a damaged file (what it holds is used).
    cut = out.decoded_frames < out.frames and out.decoded_frames >= int(max_seconds * out.sr_native)
    return Clip(y=mono, sr=int(out.sr_native), channels=int(out.channels),
                duration=float(out.duration), truncated=bool(cut))
