"""The FFmpeg decoder (through PyAV, ``import av``) for what libsndfile cannot read.

M4A/AAC, MP4/MOV audio tracks, WebM/Opus (what browsers' MediaRecorder
produces), Matroska, WMA, AMR, raw ADTS AAC, and libsndfile formats it cannot
open (e.g. a cut Ogg file).  This is the path ``librosa.load`` takes through
audioread + ffmpeg; differences from it:

* samples are converted to float directly from the decoder's format (audioread
  asks ffmpeg for 16-bit PCM first), so values differ by at most the 16-bit
  quantisation step, 2**-15 (and we keep float decoders' values above 1.0);
* ``offset`` and ``duration`` are counted in frames of the decoded stream as in
  the soundfile path (``int(offset * sr)``), not rounded as audioread does.

Damaged packets are skipped (with a warning); an error in the container stops
decoding and keeps what was decoded (with a warning).
"""

from __future__ import annotations

import contextlib

import av
import numpy as np

from soundclass.audio.checks import check_audio, check_size, check_stream, frame_range
from soundclass.audio.soundfile_backend import CannotOpen, Native
from soundclass.audio.source import Source
from soundclass.errors import AudioDecodeError

__all__ = ["decode", "probe"]

NAME = "pyav"
_MAX_BAD_PACKETS = 64  # skipped damaged packets before giving up
_SCALE = {"s16": 1.0 / 32768.0, "s32": 1.0 / 2**31, "s64": 1.0 / 2**63}


@contextlib.contextmanager
def _open(src: Source):
    try:
        container = av.open(src.rewind(), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, EOFError, RuntimeError) as exc:
        raise CannotOpen(
            src.name,
            f"not a readable audio file: unknown, unsupported or corrupt format (FFmpeg: {_why(exc)})",
        ) from None
    try:
        yield container
    finally:
        container.close()


def _why(exc: BaseException) -> str:
    return (getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).strip()


def _stream(container, name: str):
    stream = next((s for s in container.streams if s.type == "audio"), None)
    if stream is None:
        kinds = sorted({s.type for s in container.streams}) or ["none"]
        raise AudioDecodeError(name, f"holds no audio track (streams: {', '.join(kinds)})")
    if stream.codec_context is None:
        raise AudioDecodeError(name, "the audio track's codec has no decoder in this FFmpeg")
    return stream


def _estimated_frames(container, stream, sr: int) -> int | None:
    """Frames the header announces, when it says (``None`` otherwise)."""
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * sr))
    if container.duration is not None and container.duration > 0:
        return int(round(container.duration / 1_000_000 * sr))
    return None


def _format_name(container) -> str:
    return container.format.name.split(",")[0].upper()


def probe(src: Source) -> Native:
    """Header facts (``y`` empty); ``frames`` counted by decoding when the header does not say."""
    return _guarded(src.name, _probe, src)


def _probe(src: Source) -> Native:
    with _open(src) as container:
        stream = _stream(container, src.name)
        ctx = stream.codec_context
        sr, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        frames = _estimated_frames(container, stream, sr) if sr > 0 else 0
        subtype = ctx.name.upper()
        fmt = _format_name(container)
    if frames is None:  # e.g. WebM from a browser: no duration in the header
        frames = _decode(src, offset=0.0, duration=None, max_seconds=None, dtype=np.dtype(np.float32),
                         mono=True, max_bytes=None, max_sr=None, max_channels=None, count_only=True).frames
    return Native(np.zeros(0, np.float32), sr, channels, frames, fmt, subtype, NAME, [])


class _Converter:
    """Decoded frames as float arrays (channels, samples).

    PyAV's ``frame.planes`` walks ``extended_data`` up to a NULL pointer, which
    runs past the end of the array for planar frames of 8 or more channels (a
    segfault on a hostile 41-channel AAC header); such frames are first
    interleaved by FFmpeg's resampler (same rate and layout: an exact copy), so
    that only one plane is read.
    """

    def __init__(self, dtype: np.dtype):
        self.dtype = dtype
        self.packer = None

    def __call__(self, frame, channels: int) -> np.ndarray:
        fmt = frame.format
        if fmt.is_planar and channels >= 8:
            if self.packer is None:
                self.packer = av.AudioResampler(
                    format=fmt.name.rstrip("p"), layout=frame.layout, rate=frame.sample_rate
                )
            parts = [self._packed(out, channels) for out in self.packer.resample(frame)]
            if not parts:
                return np.zeros((channels, 0), self.dtype)
            return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        if fmt.is_planar:
            return self._scale(frame.to_ndarray(), fmt.name)
        return self._packed(frame, channels)

    def _packed(self, frame, channels: int) -> np.ndarray:
        a = frame.to_ndarray()  # packed: (1, samples * channels)
        return self._scale(a.reshape(-1, channels).T, frame.format.name)

    def _scale(self, a: np.ndarray, name: str) -> np.ndarray:
        base, dtype = name.rstrip("p"), self.dtype
        if base in ("flt", "dbl"):
            return a.astype(dtype, copy=False)
        if base == "u8":
            return (a.astype(dtype) - 128.0) * dtype.type(1.0 / 128.0)
        return a.astype(dtype) * dtype.type(_SCALE[base])


def decode(src: Source, **kwargs) -> Native:
    """Decode with FFmpeg: shape (n,) if ``mono`` or one channel, else (channels, n).

    Keyword arguments as :func:`soundclass.audio.soundfile_backend.decode`.

    Raises
    ------
    CannotOpen
        FFmpeg does not recognise the data.
    AudioDecodeError
        No audio track, absurd stream values, too large, nothing decodable.
    """
    return _guarded(src.name, _decode, src, count_only=False, **kwargs)


def _guarded(name: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` with PyAV's unexpected failures on malformed data
    (e.g. an ``AttributeError`` for a stream without a codec) as AudioDecodeError."""
    try:
        return fn(*args, **kwargs)
    except (AudioDecodeError, MemoryError):
        raise
    except Exception as exc:
        raise AudioDecodeError(
            name, f"corrupt data: FFmpeg failed on it ({type(exc).__name__}: {exc})"
        ) from None


def _decode(
    src: Source,
    *,
    offset: float,
    duration: float | None,
    max_seconds: float | None,
    dtype: np.dtype,
    mono: bool,
    max_bytes: int | None,
    max_sr: float | None,
    max_channels: int | None,
    count_only: bool,
) -> Native:
    name = src.name
    warnings: list[str] = []
    with _open(src) as container:
        stream = _stream(container, name)
        ctx = stream.codec_context
        sr, channels = int(ctx.sample_rate or 0), int(ctx.channels or 0)
        if sr > 0 and channels > 0:
            check_stream(name, sr=sr, channels=channels, max_sr=max_sr, max_channels=max_channels)
        fmt, subtype = _format_name(container), (ctx.name or "unknown").upper()
        estimate = _estimated_frames(container, stream, sr) if sr > 0 else None
        chunks: list[np.ndarray] = []
        convert = _Converter(dtype)
        start = n_frames = None
        pos = kept = bad = 0  # frames decoded, frames kept, damaged packets
        stop_reason = None
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except (av.FFmpegError, ValueError) as exc:
                    bad += 1
                    if bad > _MAX_BAD_PACKETS:
                        stop_reason = f"too many damaged packets ({_why(exc)})"
                        break
                    continue
                for frame in frames:
                    if start is None:  # the first frame fixes the stream's layout
                        sr, channels = int(frame.sample_rate), len(frame.layout.channels)
                        check_stream(name, sr=sr, channels=channels, max_sr=max_sr,
                                     max_channels=max_channels)
                        start, n_frames = frame_range(
                            name, sr=sr, total=None, offset=offset, duration=duration,
                            max_seconds=max_seconds,
                        )
                        want = n_frames if n_frames is not None else estimate
                        if want is not None:
                            check_size(name, frames=max(0, want), channels=channels,
                                       itemsize=dtype.itemsize, max_bytes=max_bytes, what="decoded")
                    elif int(frame.sample_rate) != sr or len(frame.layout.channels) != channels:
                        stop_reason = (f"the stream changes to sr={frame.sample_rate}, "
                                       f"{len(frame.layout.channels)} channels")
                        break
                    a = None if count_only else convert(frame, channels)
                    n = frame.samples if a is None else a.shape[1]
                    lo, hi = max(start - pos, 0), n
                    if n_frames is not None:
                        hi = min(n, start + n_frames - pos)
                    pos += n
                    if hi <= lo:
                        if n_frames is not None and pos >= start + n_frames:
                            break
                        continue
                    kept += hi - lo
                    check_size(name, frames=kept, channels=channels, itemsize=dtype.itemsize,
                               max_bytes=max_bytes, what="decoded")
                    if a is not None:
                        chunks.append(a[:, lo:hi])
                if stop_reason is not None or (n_frames is not None and start is not None
                                               and pos >= start + n_frames):
                    break
        except (av.FFmpegError, OSError, EOFError) as exc:
            stop_reason = f"the container is damaged ({_why(exc)})"
    if bad:
        warnings.append(f"damaged data: {bad} packet(s) could not be decoded and were skipped")
    if start is None:
        raise AudioDecodeError(name, "corrupt: no audio could be decoded"
                               + (f" ({stop_reason})" if stop_reason else ""))
    if count_only:
        return Native(np.zeros(0, np.float32), sr, channels, pos, fmt, subtype, NAME, warnings)
    if kept == 0:
        if pos <= start:
            raise AudioDecodeError(
                name, f"offset={offset} s is beyond the end of the audio ({pos / sr:.3f} s)"
            )
        raise AudioDecodeError(name, "corrupt: no audio could be decoded")
    if stop_reason is not None:
        warnings.insert(0, f"truncated: decoding stopped after {pos} frames, {stop_reason}")
    y = np.concatenate(chunks, axis=1) if len(chunks) > 1 else chunks[0]
    if mono and channels > 1:
        check_audio(y, path=name)  # huge samples would overflow the mean: name them as such
        y = np.mean(y, axis=0, dtype=dtype)
    elif channels == 1:
        y = y[0]
    total = pos if stop_reason is not None or n_frames is None else max(estimate or 0, pos)
    return Native(np.ascontiguousarray(y, dtype=dtype), sr, channels, total, fmt, subtype, NAME,
                  warnings)
