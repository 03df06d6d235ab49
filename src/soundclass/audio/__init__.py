"""Audio input: the one decoder, for files and in-memory data.

:func:`load` follows ``librosa.load`` (``res_type='soxr_hq'``): the same
offset/duration arithmetic, the same downmix (mean over channels) and the same
resampler, so its output matches librosa's.  What libsndfile reads is decoded
by libsndfile (bit-identical to librosa); M4A/AAC, MP4/MOV, WebM/Opus, WMA,
AMR... by FFmpeg through PyAV (librosa's audioread path), chosen by content
sniffing.  Damaged or cut files give the part present plus a warning
(:func:`decode`); every unusable source is an
:class:`~soundclass.errors.AudioDecodeError` that names it and says why.

Modules: :mod:`~soundclass.audio.load` (public entry points),
:mod:`~soundclass.audio.source` (paths, bytes, file objects),
:mod:`~soundclass.audio.sniff` (which decoder), :mod:`~soundclass.audio.soundfile_backend`
and :mod:`~soundclass.audio.pyav_backend` (the decoders),
:mod:`~soundclass.audio.capture` (libmpg123's stderr notes),
:mod:`~soundclass.audio.checks` (validity and bounds),
:mod:`~soundclass.audio.transforms` (downmix, resampling).
"""

from soundclass.audio.checks import (
    MAX_ABS,
    MAX_DECODED_BYTES,
    MAX_SR,
    MIN_SR,
    check_audio,
    is_silent,
)
from soundclass.audio.load import AudioInfo, Decoded, decode, info, load
from soundclass.audio.source import UPLOAD_NAME
from soundclass.audio.transforms import resample, resampled_length, to_mono

__all__ = [
    "AudioInfo",
    "Decoded",
    "MAX_ABS",
    "MAX_DECODED_BYTES",
    "MAX_SR",
    "MIN_SR",
    "UPLOAD_NAME",
    "check_audio",
    "decode",
    "info",
    "is_silent",
    "load",
    "resample",
    "resampled_length",
    "to_mono",
]
