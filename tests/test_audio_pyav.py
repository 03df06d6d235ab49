"""soundclass.audio's FFmpeg (PyAV) path against librosa's audioread+ffmpeg path.

audioread's ffmpeg backend is not installed here, so the reference is what it
does: FFmpeg decodes to 16-bit PCM, librosa divides by 32768, downmixes with
np.mean and resamples with soxr HQ.  Stated tolerance: 2**-15 (one 16-bit step)
at the native rate, and the same after resampling plus soxr's 1e-6.
"""

from __future__ import annotations

import sys
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.signal

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from audio_corpus import av_bytes, ffmpeg_reference, tone  # noqa: E402

from soundclass import audio  # noqa: E402

TOL = 2**-15 + 1e-6

CASES = [
    ("ipod", "aac", 44100, 1),
    ("mp4", "aac", 16000, 2),
    ("webm", "libopus", 48000, 1),
    ("webm", "libopus", 48000, 2),
]


@pytest.mark.parametrize("fmt,codec,sr,channels", CASES, ids=lambda v: str(v))
def test_matches_librosa_audioread_path(tmp_path, fmt, codec, sr, channels):
    data = av_bytes(tone(sr, 1.0, channels=channels), sr, fmt, codec)
    path = tmp_path / f"clip.{fmt}"
    path.write_bytes(data)
    ref, sr_ref = ffmpeg_reference(data)  # (channels, n) int16 / 32768
    y, sr_out = audio.load(path, sr=None, mono=False)
    assert sr_out == sr_ref
    np.testing.assert_allclose(y.reshape(ref.shape), ref, rtol=0, atol=TOL)
    mono_ref = librosa.resample(librosa.to_mono(ref), orig_sr=sr_ref, target_sr=22050, res_type="soxr_hq")
    y22, _ = audio.load(path)
    assert y22.shape == mono_ref.shape
    np.testing.assert_allclose(y22, mono_ref, rtol=0, atol=2 * TOL)
    part, _ = audio.load(path, sr=None, offset=0.25, duration=0.5)
    np.testing.assert_array_equal(part, audio.load(path, sr=None)[0][int(0.25 * sr_ref):][: int(0.5 * sr_ref)])


@pytest.mark.parametrize("fmt,codec,sr", [("ipod", "aac", 44100), ("webm", "libopus", 48000)])
def test_close_to_the_source_signal(fmt, codec, sr):
    """Lossy codecs: after aligning the encoder delay, SNR against the source > 20 dB."""
    x = tone(sr, 1.0)
    y, _ = audio.load(av_bytes(x, sr, fmt, codec), sr=None)
    corr = scipy.signal.correlate(y, x, mode="full", method="fft")[x.size - 1 :]  # lags >= 0
    lag = int(np.argmax(corr[:3000]))
    n = min(x.size, y.size - lag)
    err = y[lag : lag + n] - x[:n]
    best = 10 * np.log10(np.sum(x[:n] ** 2) / np.sum(err**2))
    assert best > 20.0, best
