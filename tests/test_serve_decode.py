"""The demo's one decoding seam, ``decode_upload``: bytes in memory -> a mono clip."""

from __future__ import annotations

import io

import numpy as np
import pytest

from conftest import make_signal
from soundclass.apps.serve import decode_upload
from soundclass.errors import AudioDecodeError, ParameterError
from test_serve_common import SMALL_LIMITS, ServerPool, wav_bytes


@pytest.fixture
def serve_app():
    with ServerPool() as start:
        yield start


@pytest.fixture
def server(serve_app):
    return serve_app(**SMALL_LIMITS)


def test_decode_wav_mono_and_stereo():
    y = make_signal(sr=8000, seconds=0.5)
    clip = decode_upload(wav_bytes(y, 8000), max_seconds=5.0)
    assert clip.sr == 8000 and clip.channels == 1 and not clip.truncated
    assert clip.duration == pytest.approx(0.5)
    np.testing.assert_allclose(clip.y, y, atol=1 / 32768 + 1e-7)

    st = make_signal(sr=8000, seconds=0.5, channels=2)
    clip = decode_upload(wav_bytes(st, 8000, subtype="FLOAT"), max_seconds=5.0)
    assert clip.channels == 2 and clip.y.shape == (4000,)
    np.testing.assert_allclose(clip.y, st.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_16"), ("WAV", "PCM_U8"), ("OGG", "VORBIS"), ("AIFF", "PCM_24")])
def test_decode_other_formats(fmt, subtype):
    y = make_signal(sr=16000, seconds=0.3)
    clip = decode_upload(wav_bytes(y, 16000, subtype=subtype, format=fmt))
    assert clip.sr == 16000 and clip.y.dtype == np.float32
    assert abs(clip.y.size - y.size) <= 1024  # Vorbis may pad a little


def test_decode_keeps_only_first_max_seconds():
    data = wav_bytes(make_signal(sr=8000, seconds=3.0), 8000)
    clip = decode_upload(data, max_seconds=1.25)
    assert clip.truncated and clip.y.size == 10000
    assert clip.duration == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty upload"),
        (b"this is not audio at all, just some text" * 10, "not a readable audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
    ],
)
def test_decode_bad_bytes_give_reason(data, reason):
    with pytest.raises(AudioDecodeError, match=reason) as info:
        decode_upload(data)
    assert info.value.path == "<upload>"  # no file name: uploads are never written


def test_decode_truncated_file_keeps_what_is_there():
    data = wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)
    clip = decode_upload(data[: 44 + 2 * 1000])  # header says 8000 frames, 1000 present
    assert clip.y.size == 1000 and clip.duration == pytest.approx(0.125) and not clip.truncated


def test_decode_rejects_zero_frames():
    with pytest.raises(AudioDecodeError, match=r"contains no audio \(0 frames\)"):
        decode_upload(wav_bytes(np.zeros(0, np.float32), 8000))


def test_decode_rejects_non_finite_samples():
    y = make_signal(sr=8000, seconds=0.2)
    y[100] = np.nan
    with pytest.raises(AudioDecodeError, match="non-finite"):
        decode_upload(wav_bytes(y, 8000, subtype="FLOAT"))


def test_decode_rejects_bad_max_seconds():
    with pytest.raises(ParameterError, match="max_seconds"):
        decode_upload(b"x", max_seconds=0)


def test_decode_caps_sample_rate_and_channels():
    data = wav_bytes(make_signal(sr=48000, seconds=0.1, channels=2), 48000)
    with pytest.raises(AudioDecodeError, match=r"sr=48000 Hz in the header is outside \[1000, 44100\] Hz"):
        decode_upload(data, max_sr=44100)
    with pytest.raises(AudioDecodeError, match=r"channels=2 is outside \[1, 1\]"):
        decode_upload(data, max_channels=1)


# --------------------------------------------------------------------------- what browsers record


def _encode_with_pyav(fmt: str, codec: str, *, sr: int, channels: int, seconds: float = 1.0) -> bytes:
    """A 440 Hz tone encoded by PyAV's bundled FFmpeg (what MediaRecorder produces)."""
    import av

    buf = io.BytesIO()
    n = int(sr * seconds)
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / sr)).astype(np.float32)
    y = np.tile(tone, (channels, 1))  # (channels, n), planar float
    with av.open(buf, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=sr, layout="mono" if channels == 1 else "stereo")
        for start in range(0, n, 1024):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(y[:, start:start + 1024]), format="fltp", layout=stream.layout
            )
            frame.sample_rate, frame.pts = sr, start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buf.getvalue()


BROWSER_RECORDINGS = [
    # (id, container, codec, sr, channels): Chromium/Firefox MediaRecorder, Safari MediaRecorder
    ("webm-opus", "webm", "libopus", 48000, 1),
    ("m4a-aac", "ipod", "aac", 44100, 2),
]


@pytest.mark.parametrize(("fmt", "codec", "sr", "channels"), [r[1:] for r in BROWSER_RECORDINGS],
                         ids=[r[0] for r in BROWSER_RECORDINGS])
def test_browser_recordings_are_analysed(server, fmt, codec, sr, channels):
    """What browsers' MediaRecorder produces (WebM/Opus, MP4/AAC) is decoded in memory (PyAV)."""
    data = _encode_with_pyav(fmt, codec, sr=sr, channels=channels)
    status, out = server.json("POST", "/api/predict", data, {"Content-Type": f"audio/{fmt}"})
    assert status == 200, out
    assert out["sr"] == sr and out["channels"] == channels
    assert out["duration"] == pytest.approx(1.0, abs=0.05)  # encoder priming/padding aside
    assert out["truncated"] is False and len(out["top"]) == 5
    # the tone survives the codec: most of the energy sits at 440 Hz in the analysed signal
    peak = server.app.predictor.seen_peaks[-1]
    assert 0.3 < peak < 0.7
