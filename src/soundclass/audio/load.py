"""The public loader: :func:`load` (librosa-shaped), :func:`decode` (with warnings) and :func:`info`.

Flow: open the source (path, bytes or file object), sniff its first bytes to
choose the decoder (libsndfile, or FFmpeg through PyAV), decode the selected
frames at the native rate within the caps, check the samples, downmix and
resample with soxr HQ (output size checked before resampling), check again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from soundclass.audio import pyav_backend, soundfile_backend
from soundclass.audio.checks import MAX_DECODED_BYTES, check_audio
from soundclass.audio.sniff import PYAV, sniff
from soundclass.audio.soundfile_backend import CannotOpen, Native
from soundclass.audio.source import Source, SourceLike, open_source, source_name
from soundclass.audio.transforms import resample
from soundclass.errors import AudioDecodeError, ParameterError, check_positive_int

__all__ = ["AudioInfo", "Decoded", "decode", "info", "load"]


@dataclass(frozen=True)
class AudioInfo:
    """What the header of an audio file says.

    Attributes
    ----------
    path : str
        The path, or ``'<upload>'`` for in-memory data.
    sr : int
        Native sample rate in Hz.
    channels : int
    frames : int
        Samples per channel (what the file holds when its header claims more;
        an estimate for some compressed formats).
    duration : float
        ``frames / sr`` in seconds.
    format : str
        Container, e.g. ``'WAV'``, ``'FLAC'``, ``'OGG'``, ``'MOV'`` (MP4/M4A), ``'MATROSKA'``.
    subtype : str
        Encoding, e.g. ``'PCM_16'``, ``'FLOAT'``, ``'VORBIS'``, ``'AAC'``, ``'OPUS'``.
    decoder : str
        ``'soundfile'`` (libsndfile) or ``'pyav'`` (FFmpeg).
    warnings : tuple of str
        E.g. ``"truncated: header says N frames, file holds M"``.
    """

    path: str
    sr: int
    channels: int
    frames: int
    duration: float
    format: str
    subtype: str
    decoder: str = "soundfile"
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decoded:
    """A decoded signal and what happened on the way.

    Attributes
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        As :func:`load` returns it.
    sr : float
        Sample rate of ``y`` (the native rate, an ``int``, when ``sr=None``).
    warnings : tuple of str
        Non-fatal problems: ``"truncated: ..."`` (damaged or cut file, the part
        present is in ``y``), ``"damaged MPEG data: ..."``, ``"corrupt data after ..."``.
    decoder : str
        ``'soundfile'`` or ``'pyav'``.
    sr_native : int
    channels : int
        Channels of the source (before any downmix).
    frames : int
        Native frames the source holds (see :attr:`AudioInfo.frames`).
    format, subtype : str
    decoded_frames : int
        Native frames decoded (before resampling); fewer than ``frames`` when
        ``offset``, ``duration`` or ``max_seconds`` selected a part.
    """

    y: np.ndarray
    sr: float
    warnings: tuple[str, ...]
    decoder: str
    sr_native: int
    channels: int
    frames: int
    format: str
    subtype: str
    decoded_frames: int = 0

    @property
    def duration(self) -> float:
        """Seconds of audio in the whole source (``frames / sr_native``)."""
        return self.frames / self.sr_native

    @property
    def truncated(self) -> bool:
        """Whether the source is damaged or cut (a ``"truncated"`` warning)."""
        return any(w.startswith("truncated") for w in self.warnings)


def _check_params(sr, offset, duration, dtype, max_seconds, max_sr, max_channels, max_bytes):
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ParameterError(f"dtype={dtype} must be float32 or float64")
    if sr is not None and (isinstance(sr, bool) or not 0 < sr < np.inf):
        raise ParameterError(f"sr={sr!r} must be a positive number or None")
    if not 0 <= offset < np.inf:
        raise ParameterError(f"offset={offset!r} must be >= 0 seconds")
    for key, value in (("duration", duration), ("max_seconds", max_seconds), ("max_sr", max_sr)):
        if value is not None and not value > 0:
            raise ParameterError(f"{key}={value!r} must be positive or None")
    for key, value in (("max_channels", max_channels), ("max_bytes", max_bytes)):
        check_positive_int(key, value, allow_none=True)
    return dtype


def _first_decoder(src: Source, run) -> tuple[Any, CannotOpen | None]:
    """``run(decoder, sniffed)`` with the sniffed decoder; if it cannot open the data, with the next one.

    Returns what ``run`` returned and the first decoder's :class:`CannotOpen`
    (``None`` if the first one opened it).  When every decoder fails, the first
    decoder's reason is the error (it is the one the content pointed to); a
    fallback that opens the data but fails too also reports the first reason.
    """
    sniffed = sniff(src.head)
    first: CannotOpen | None = None
    for decoder in sniffed.decoders:
        try:
            return run(decoder, sniffed), first
        except CannotOpen as exc:
            first = first or exc
        except AudioDecodeError:
            if first is None:
                raise
            break
    assert first is not None
    raise AudioDecodeError(first.path, first.reason) from None


def _native(src: Source, **options) -> Native:
    """Decode with the sniffed decoder, or the next one (:func:`_first_decoder`)."""
    nat, first = _first_decoder(src, lambda decoder, sniffed: (
        pyav_backend.decode(src, **options) if decoder == PYAV
        else soundfile_backend.decode(src, sniffed, **options)))
    if first is not None:
        nat.warnings.insert(0, f"decoded by FFmpeg: libsndfile could not ({first.reason})")
    return nat


def decode(
    source: SourceLike,
    *,
    sr: float | None = 22050,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    dtype: np.dtype | type = np.float32,
    max_bytes: int | None = MAX_DECODED_BYTES,
    max_seconds: float | None = None,
    max_sr: float | None = None,
    max_channels: int | None = None,
    name: str | None = None,
) -> Decoded:
    """Decode audio like :func:`load`, also returning warnings and stream facts.

    Parameters are those of :func:`load`.

    Returns
    -------
    Decoded
    """
    dtype = _check_params(sr, offset, duration, dtype, max_seconds, max_sr, max_channels, max_bytes)
    label = source_name(source, name)
    try:
        with open_source(source, name=name) as src:
            nat = _native(
                src, offset=offset, duration=duration, max_seconds=max_seconds, dtype=dtype,
                mono=mono, max_bytes=max_bytes, max_sr=max_sr, max_channels=max_channels,
            )
        y = nat.y
        if sr is None or sr == nat.sr:
            check_audio(y, path=label)
        else:  # resample checks its input and its output
            y = resample(y, orig_sr=nat.sr, target_sr=sr, max_bytes=max_bytes, path=label)
    except MemoryError:
        raise AudioDecodeError(
            label, "out of memory while decoding: the header announces more audio than can be held"
        ) from None
    return Decoded(
        y=y, sr=nat.sr if sr is None else sr, warnings=tuple(nat.warnings), decoder=nat.decoder,
        sr_native=nat.sr, channels=nat.channels, frames=max(nat.frames, 1), format=nat.format,
        subtype=nat.subtype, decoded_frames=int(nat.y.shape[-1]),
    )


def load(
    source: SourceLike,
    *,
    sr: float | None = 22050,
    mono: bool = True,
    offset: float = 0.0,
    duration: float | None = None,
    dtype: np.dtype | type = np.float32,
    max_bytes: int | None = MAX_DECODED_BYTES,
    max_seconds: float | None = None,
    max_sr: float | None = None,
    max_channels: int | None = None,
    name: str | None = None,
) -> tuple[np.ndarray, float]:
    """Decode audio like ``librosa.load(..., res_type='soxr_hq')``.

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
        A file, or a whole file's bytes in memory (e.g. an upload).  Any format
        libsndfile reads (WAV in every subtype, FLAC, Ogg Vorbis/Opus, MP3,
        AIFF, ...) or FFmpeg reads (M4A/AAC, MP4/MOV, WebM/Opus, WMA, AMR, ...);
        the decoder is chosen from the content, never from the file name.
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
        Refuse to produce more than this many bytes of samples, natively decoded
        or resampled (``None``: no limit).
    max_seconds : float or None
        Decode at most this many seconds of native audio (after ``offset``); the
        rest is ignored, without an error.
    max_sr : float or None
        Refuse native sample rates above this (in any case outside [1000, 768000] Hz).
    max_channels : int or None
        Refuse sources with more channels.
    name : str or None
        What error messages call the source (default: the path, or ``'<upload>'``).

    Returns
    -------
    y : np.ndarray [shape=(n,) or (channels, n)]
        ``(n,)`` if ``mono`` or the source has one channel, else ``(channels, n)``.
    sr : float
        Sample rate of ``y`` (the native rate, an ``int``, when ``sr=None``).

    Raises
    ------
    AudioDecodeError
        Missing, unreadable (permission, symlink loop), empty or undecodable
        source; absurd header values; non-finite or huge samples; offset past
        the end; larger than ``max_bytes``.  A cut or damaged file is *not* an
        error: the part present is returned (:func:`decode` gives the warning).
    ParameterError
        Invalid ``sr``, ``offset``, ``duration``, ``dtype`` or caps.
    """
    out = decode(
        source, sr=sr, mono=mono, offset=offset, duration=duration, dtype=dtype,
        max_bytes=max_bytes, max_seconds=max_seconds, max_sr=max_sr, max_channels=max_channels,
        name=name,
    )
    return out.y, out.sr


def info(source: SourceLike, *, name: str | None = None) -> AudioInfo:
    """Header information of an audio file (or of in-memory data).

    Parameters
    ----------
    source : str, os.PathLike, bytes or binary file object
    name : str or None
        What error messages call the source.

    Returns
    -------
    AudioInfo

    Raises
    ------
    AudioDecodeError
        Missing, empty or unreadable source.
    """
    label = source_name(source, name)
    try:
        with open_source(source, name=name) as src:
            nat, _ = _first_decoder(src, lambda decoder, sniffed: (
                pyav_backend.probe(src) if decoder == PYAV else soundfile_backend.probe(src, sniffed)))
    except MemoryError:
        raise AudioDecodeError(label, "out of memory while reading the header") from None
    return AudioInfo(
        path=label,
        sr=nat.sr, channels=nat.channels, frames=nat.frames,
        duration=nat.frames / nat.sr if nat.sr > 0 else 0.0,
        format=nat.format, subtype=nat.subtype, decoder=nat.decoder, warnings=tuple(nat.warnings),
    )
