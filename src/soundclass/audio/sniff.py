"""Content sniffing: which decoder reads these bytes, from their magic numbers.

The extension is never consulted, so an AAC stream named ``.mp3`` goes to
FFmpeg (libsndfile, given the name, would decode it as MPEG Layer II into a
fraction of its length) and a WAV named ``.m4a`` to libsndfile.

=====================================  ===========  ===========================
content                                decoder      fallback if it cannot open
=====================================  ===========  ===========================
RIFF/WAVE, RF64, Wave64, AIFF/AIFC,    soundfile    pyav
FLAC, Ogg (Vorbis, Opus, FLAC), MP3,
CAF, AU, other libsndfile formats
MP4/M4A/MOV (``ftyp``, ``moov``...),   pyav         none
Matroska/WebM, ASF/WMA, AMR, ADTS AAC,
AVI, Monkey's Audio, WavPack, AC-3
unrecognised bytes                     soundfile    none
=====================================  ===========  ===========================
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Sniffed", "sniff"]

SOUNDFILE = "soundfile"
PYAV = "pyav"


@dataclass(frozen=True)
class Sniffed:
    """What the first bytes of a source say.

    Attributes
    ----------
    container : str
        A short name, e.g. ``'WAV'``, ``'MP3'``, ``'MP4'``, ``'WEBM'``, ``'unknown'``.
    decoders : tuple of str
        Decoders to try in order (``'soundfile'``, ``'pyav'``).
    mpeg : bool
        MPEG audio (MP3, or MP3 inside WAV): libmpg123 may print resync notes.
    """

    container: str
    decoders: tuple[str, ...]
    mpeg: bool = False


def _sf(container: str, *, mpeg: bool = False) -> Sniffed:
    return Sniffed(container, (SOUNDFILE, PYAV), mpeg)


def _av(container: str) -> Sniffed:
    return Sniffed(container, (PYAV,))


def _wav_format_tag(head: bytes) -> int | None:
    """The ``fmt `` chunk's format tag of a RIFF/WAVE head, if it is in ``head``."""
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if cid == b"fmt ":
            if pos + 10 > len(head):
                return None
            tag = struct.unpack("<H", head[pos + 8 : pos + 10])[0]
            if tag == 0xFFFE and pos + 8 + 26 <= len(head):  # WAVE_FORMAT_EXTENSIBLE
                tag = struct.unpack("<H", head[pos + 8 + 24 : pos + 8 + 26])[0]
            return tag
        pos += 8 + size + (size & 1)
    return None


def _mpeg_kind(head: bytes) -> str | None:
    """``'MP3'`` (MPEG-1/2 audio), ``'AAC'`` (ADTS) or ``None`` for a frame sync at the start."""
    if len(head) >= 10 and head[:3] == b"ID3":
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        rest = head[10 + size :]
        if not rest:  # the tag is longer than the sniffed head: audio follows, MPEG most likely
            return "MP3"
        head = rest.lstrip(b"\0")
    if len(head) < 2 or head[0] != 0xFF or (head[1] & 0xE0) != 0xE0:
        return None
    layer = (head[1] >> 1) & 0x3
    if (head[1] & 0xF0) == 0xF0 and layer == 0:
        return "AAC"
    return "MP3" if layer != 0 else None


def sniff(head: bytes) -> Sniffed:
    """Which decoders to try for data starting with ``head``.

    Parameters
    ----------
    head : bytes
        The first bytes of the data (a few kB is plenty).

    Returns
    -------
    Sniffed
    """
    four = head[:4]
    if four in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        tag = _wav_format_tag(head)
        return _sf("WAV", mpeg=tag in (0x0050, 0x0055))
    if four == b"RIFF" and head[8:12] == b"AVI ":
        return _av("AVI")
    if four in (b"RF64", b"BW64") or head[:4] == b"riff":  # RF64, BW64, Sony Wave64
        return _sf("WAV")
    if four == b"FORM":
        return _sf("AIFF")
    if four == b"fLaC":
        return _sf("FLAC")
    if four == b"OggS":
        return _sf("OGG")
    if four == b"caff":
        return _sf("CAF")
    if four in (b".snd", b"dns."):
        return _sf("AU")
    if four == b"wvpk":
        return _av("WAVPACK")
    if four == b"MAC ":
        return _av("APE")
    if head[4:8] == b"ftyp" or head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip"):
        return _av("MP4")
    if four == b"\x1a\x45\xdf\xa3":
        return _av("WEBM" if b"webm" in head[:64] else "MATROSKA")
    if head[:16] == bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"):
        return _av("ASF")
    if head[:5] == b"#!AMR":
        return _av("AMR")
    if head[:2] == b"\x0b\x77":
        return _av("AC3")
    kind = _mpeg_kind(head)
    if kind == "AAC":
        return _av("AAC")
    if kind == "MP3":
        return _sf("MP3", mpeg=True)
    return Sniffed("unknown", (SOUNDFILE,))
