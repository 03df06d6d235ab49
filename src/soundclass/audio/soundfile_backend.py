"""The libsndfile decoder (through soundfile): WAV in every subtype, FLAC, Ogg, MP3, AIFF, ...

Reads exactly what ``librosa.load`` reads through soundfile (same frames, same
float conversion, same downmix), and keeps what a damaged file holds:

* a header that announces more data than the file holds (a cut file, a
  patched ``data`` size) gives the frames present plus the warning
  ``"truncated: header says N frames, file holds M"``;
* compressed subtypes (MP3 in WAV, whose ``fact`` chunk counts the decoder's
  padding, ADPCM, GSM 6.10) keep their decoded length without a word;
* a decoding error part-way (e.g. "flac decoder lost sync") keeps the frames
  decoded before it, with a warning.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf

from soundclass.audio.capture import captured_stderr, mpg123_warning
from soundclass.audio.checks import check_audio, check_size, check_stream, frame_range
from soundclass.audio.sniff import Sniffed
from soundclass.audio.source import Source
from soundclass.errors import AudioDecodeError

__all__ = ["CannotOpen", "Native", "decode", "probe"]

NAME = "soundfile"

# libsndfile logs "data : 44100 (should be 22028)" when a RIFF/AIFF header
# announces more audio than the file holds.
_SHORT_DATA = re.compile(r"^\s*(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Sizes streaming writers put in headers when the length is unknown.
_UNKNOWN_SIZES = {0, 0xFFFFFFFF, 0x7FFFFFFF, 0xFFFFFFFF - 8}
# Subtypes whose every frame has a fixed size: a short read means lost data.
_FIXED = {"PCM_S8", "PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"}
_BLOCK = 1 << 16  # frames per read call
_RECOVERY_BLOCK = 1024  # frames per read call when re-reading up to a decoding error


class CannotOpen(AudioDecodeError):
    """This decoder does not recognise the data (another decoder may)."""


@dataclass
class Native:
    """What a decoder produced, at the native rate.

    Attributes
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
    sr : int
    channels : int
        Channels in the source (``y`` is mixed down when ``mono``).
    frames : int
        Frames the source holds (an estimate for some compressed formats).
    format, subtype : str
    decoder : str
    warnings : list of str
    """

    y: np.ndarray
    sr: int
    channels: int
    frames: int
    format: str
    subtype: str
    decoder: str
    warnings: list[str] = field(default_factory=list)


class _SafeFile:
    """A file object for libsndfile's virtual I/O whose failures are return values.

    soundfile calls ``seek``/``read`` from C callbacks, where a Python exception
    (e.g. ``ValueError: negative seek value`` on a corrupt header) cannot
    propagate and is printed on stderr instead; here a failed seek leaves the
    position unchanged and a failed read reads nothing, which libsndfile reports
    as an error of its own.
    """

    def __init__(self, file):
        self._file = file

    def read(self, n: int = -1) -> bytes:
        try:
            return self._file.read(n)
        except (OSError, ValueError, OverflowError):
            return b""

    def readinto(self, buf) -> int:
        readinto = self._file.readinto  # AttributeError: soundfile falls back to read()
        try:
            return readinto(buf) or 0
        except (OSError, ValueError, OverflowError):
            return 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return self._file.seek(offset, whence)
        except (OSError, ValueError, OverflowError):
            return self._file.tell()

    def tell(self) -> int:
        return self._file.tell()


def _open(src: Source) -> sf.SoundFile:
    try:
        if src.fd is not None:  # libsndfile reads the descriptor natively
            os.lseek(src.fd, 0, os.SEEK_SET)
            return sf.SoundFile(src.fd, closefd=False)
        return sf.SoundFile(_SafeFile(src.rewind()))
    except sf.LibsndfileError as exc:
        detail = exc.error_string.strip().rstrip(".")
        if "does not exist" in detail:  # libsndfile's words for some unparsable MP3s
            detail = "no decoder recognises its contents"
        raise CannotOpen(
            src.name,
            f"not a readable audio file: unknown, unsupported or corrupt format ({detail})",
        ) from None
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise CannotOpen(src.name, f"cannot be opened as audio ({exc})") from None


def _truncation(desc: sf.SoundFile) -> tuple[int, int] | None:
    """``(frames the header announces, frames present)`` if libsndfile's log says it is cut."""
    match = _SHORT_DATA.search(desc.extra_info)
    if match is None:
        return None
    announced, present = int(match.group(1)), int(match.group(2))
    if announced in _UNKNOWN_SIZES or present >= announced:
        return None
    frames = int(desc.frames)
    claimed = round(frames * announced / present) if present > 0 else announced
    return max(claimed, frames), frames


@contextlib.contextmanager
def _quiet(sniffed: Sniffed, warnings: list[str]):
    """Capture libmpg123's notes on fd 2 for MPEG content; add one warning."""
    if not sniffed.mpeg:
        yield
        return
    lines: list[str] = []
    try:
        with captured_stderr(lines):
            yield
    finally:
        note = mpg123_warning(lines)
        if note is not None:
            warnings.append(note)


def probe(src: Source, sniffed: Sniffed) -> Native:
    """Header facts (``y`` empty) without decoding.

    Raises
    ------
    CannotOpen
        libsndfile does not recognise the data.
    """
    warnings: list[str] = []
    with _quiet(sniffed, warnings), _open(src) as desc:
        cut = _truncation(desc)
        if cut is not None:
            warnings.append(f"truncated: header says {cut[0]} frames, file holds {cut[1]}")
        return Native(
            np.zeros(0, np.float32), int(desc.samplerate), int(desc.channels), int(desc.frames),
            desc.format, desc.subtype, NAME, warnings,
        )


def _read_into(desc: sf.SoundFile, out: np.ndarray, reread, warnings: list[str], name: str) -> int:
    """Fill ``out`` (frames, channels) from the current position; frames read.

    A decoding error part-way keeps what was decoded before it (``reread(out)``
    decodes again in small blocks up to the error: libsndfile's error state is
    sticky, so this needs a fresh handle) and adds a warning.
    """
    pos, n = 0, out.shape[0]
    while pos < n:
        k = min(_BLOCK, n - pos)
        try:
            got = desc.read(frames=k, always_2d=True, out=out[pos : pos + k]).shape[0]
        except (RuntimeError, ValueError, OSError) as exc:
            pos = max(pos, reread(out[: pos + k]))
            if pos == 0:
                raise AudioDecodeError(name, f"corrupt audio data, decoding failed ({exc})") from None
            warnings.append(
                f"corrupt data after {pos / desc.samplerate:.3f} s: decoding stopped there "
                f"({str(exc).strip()}); kept {pos} frames"
            )
            return pos
        pos += got
        if got < k:
            break
    return pos


def _reread(src: Source, start: int, out: np.ndarray) -> int:
    """Frames decodable into ``out`` from frame ``start`` with a fresh handle, in small blocks."""
    pos = 0
    try:
        with _open(src) as desc:
            if start:
                desc.seek(start)
            while pos < out.shape[0]:
                step = min(_RECOVERY_BLOCK, out.shape[0] - pos)
                got = desc.read(frames=step, always_2d=True, out=out[pos : pos + step]).shape[0]
                pos += got
                if got < step:
                    break
    except (AudioDecodeError, RuntimeError, ValueError, OSError):
        pass
    return pos


def _mix(raw: np.ndarray, dtype: np.dtype, pcm16: bool) -> np.ndarray:
    """Mean over the channel columns of ``raw`` (frames, channels), bit-identical to
    librosa's ``np.mean(y, axis=0)``: columns summed one by one (numpy's axis=1
    reduction over a few interleaved channels is ~10x slower), divided once.  PCM_16
    is read as int16 (half the bytes); k / 32768 sums are exact in float32."""
    raw = raw.astype(dtype, copy=False)  # contiguous cast: strided int casts are slow
    y = raw[:, 0] + raw[:, 1]
    for c in range(2, raw.shape[1]):
        y += raw[:, c]
    if pcm16:
        y *= dtype.type(1.0 / 32768.0)
    y /= dtype.type(raw.shape[1])
    return y


def decode(src: Source, sniffed: Sniffed, **kwargs) -> Native:
    """Decode with libsndfile: shape (n,) if ``mono`` or one channel, else (channels, n).

    Keyword arguments: ``offset``, ``duration``, ``max_seconds``, ``dtype``, ``mono``,
    ``max_bytes``, ``max_sr``, ``max_channels`` (as :func:`soundclass.audio.load`).

    Raises
    ------
    CannotOpen
        libsndfile does not recognise the data.
    AudioDecodeError
        Absurd header values, offset past the end, too large, nothing decodable.
    """
    try:
        return _decode(src, sniffed, **kwargs)
    except (AudioDecodeError, MemoryError):
        raise
    except Exception as exc:  # soundfile/cffi surprises on malformed data
        raise AudioDecodeError(
            src.name, f"corrupt data: libsndfile failed on it ({type(exc).__name__}: {exc})"
        ) from None


def _decode(
    src: Source,
    sniffed: Sniffed,
    *,
    offset: float,
    duration: float | None,
    max_seconds: float | None,
    dtype: np.dtype,
    mono: bool,
    max_bytes: int | None,
    max_sr: float | None,
    max_channels: int | None,
) -> Native:
    warnings: list[str] = []
    name = src.name
    with _quiet(sniffed, warnings), _open(src) as desc:
        sr, channels, total = int(desc.samplerate), int(desc.channels), int(desc.frames)
        check_stream(name, sr=sr, channels=channels, max_sr=max_sr, max_channels=max_channels)
        if total <= 0:  # e.g. a cut Ogg file: FFmpeg may still read it
            raise CannotOpen(name, "contains no audio (0 frames)")
        cut = _truncation(desc)
        start, n_frames = frame_range(
            name, sr=sr, total=total, offset=offset, duration=duration, max_seconds=max_seconds
        )
        check_size(name, frames=n_frames, channels=channels, itemsize=dtype.itemsize,
                   max_bytes=max_bytes, what="decoded")
        try:
            if start and desc.seekable():
                desc.seek(start)
            elif start:  # e.g. GSM 6.10 in WAV: decode and drop the frames before the offset
                desc.read(frames=start, dtype="int16", always_2d=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise AudioDecodeError(name, f"corrupt audio data, decoding failed ({exc})") from None
        pcm16 = mono and channels > 1 and desc.subtype == "PCM_16"
        raw = np.empty((n_frames, channels), dtype=np.int16 if pcm16 else dtype)
        got = _read_into(desc, raw, lambda out: _reread(src, start, out), warnings, name)
        fmt, subtype = desc.format, desc.subtype
    if got == 0:
        raise AudioDecodeError(name, "corrupt: no audio could be decoded")
    if cut is not None:
        held = start + got if got < n_frames else cut[1]
        warnings.insert(0, f"truncated: header says {cut[0]} frames, file holds {held}")
    elif got < n_frames and subtype in _FIXED and not any("corrupt data" in w for w in warnings):
        warnings.insert(0, f"truncated: header says {total} frames, file holds {start + got}")
    # Compressed subtypes (MP3 in WAV, ADPCM, GSM): the header's length is the
    # encoder's estimate (MP3 padding in the fact chunk); the decoded length stands.
    raw = raw[:got] if got * 2 > n_frames else raw[:got].copy()
    if mono and channels > 1:
        if not pcm16:  # huge samples would overflow the sum: name them as such
            check_audio(raw, path=name)
        y = _mix(raw, dtype, pcm16)
    elif channels == 1:
        y = raw[:, 0]  # librosa gives (n,) for single-channel files, mono or not
    else:
        y = raw.T
    return Native(np.ascontiguousarray(y), sr, channels, total if cut is None else cut[1],
                  fmt, subtype, NAME, warnings)
