"""soundclass.audio: decoding every soundfile subtype like librosa.load, and bad input."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import soundfile as sf

from soundclass.audio import (
    AudioInfo,
    check_audio,
    decode,
    info,
    is_silent,
    load,
    resample,
    to_mono,
)
from soundclass.errors import AudioDecodeError, ParameterError

# (container, subtype, extension, native sr, channels)
SUBTYPES = [
    ("WAV", "PCM_U8", "wav", 16000, 2),
    ("WAV", "PCM_16", "wav", 44100, 2),
    ("WAV", "PCM_24", "wav", 16000, 2),
    ("WAV", "PCM_32", "wav", 16000, 1),
    ("WAV", "FLOAT", "wav", 22050, 2),
    ("WAV", "DOUBLE", "wav", 16000, 2),
    ("WAV", "ULAW", "wav", 8000, 1),
    ("WAV", "ALAW", "wav", 8000, 2),
    ("WAV", "IMA_ADPCM", "wav", 16000, 2),
    ("WAV", "MS_ADPCM", "wav", 16000, 1),
    ("WAV", "GSM610", "wav", 8000, 1),
    ("WAVEX", "PCM_16", "wav", 48000, 6),
    ("AIFF", "PCM_S8", "aiff", 16000, 1),
    ("FLAC", "PCM_16", "flac", 44100, 2),
    ("FLAC", "PCM_24", "flac", 16000, 1),
    ("OGG", "VORBIS", "ogg", 44100, 2),
    ("MP3", "MPEG_LAYER_III", "mp3", 44100, 2),
]

LOAD_ARGS = [
    dict(sr=None),
    dict(sr=22050, mono=False),
    dict(sr=8000, offset=0.25, duration=0.5),
    dict(sr=16000, mono=True, offset=0.1),
]


def _write(tmp_path, fmt, subtype, ext, sr, channels, signal, seconds=1.0):
    # libsndfile (bundled with soundfile, a required dependency) writes every one of these:
    # a missing subtype is a broken install, which fails here rather than skipping.
    data = signal(sr=sr, seconds=seconds, channels=channels)
    path = tmp_path / f"clip_{fmt}_{subtype}.{ext}"
    sf.write(path, data, sr, format=fmt, subtype=subtype)
    return path


def _librosa_load(path, *, sr=22050, mono=True, offset=0.0, duration=None):
    """librosa.load; for files soundfile calls non-seekable (GSM 6.10), where
    librosa.load fails, librosa's steps with explicit frame counts."""
    try:
        return librosa.load(path, sr=sr, mono=mono, offset=offset, duration=duration, res_type="soxr_hq")
    except Exception:  # soundfile: not seekable; the audioread fallback has no backend
        with sf.SoundFile(path) as f:
            sr_native = f.samplerate
            start = int(offset * sr_native)
            f.read(frames=start)  # not seekable: decode and drop
            n = f.frames - start if duration is None else int(duration * sr_native)
            y = f.read(frames=min(n, f.frames - start), dtype="float32", always_2d=False).T
        if mono:
            y = librosa.to_mono(y)
        if sr is None:
            return y, sr_native
        return librosa.resample(y, orig_sr=sr_native, target_sr=sr, res_type="soxr_hq"), sr


@pytest.mark.parametrize("fmt,subtype,ext,sr,channels", SUBTYPES, ids=lambda v: str(v))
def test_load_matches_librosa_for_every_subtype(tmp_path, signal, fmt, subtype, ext, sr, channels):
    path = _write(tmp_path, fmt, subtype, ext, sr, channels, signal)
    for kwargs in LOAD_ARGS:
        y, sr_out = load(path, **kwargs)
        ref, sr_ref = _librosa_load(path, **kwargs)
        assert sr_out == sr_ref, kwargs
        assert y.shape == ref.shape, kwargs
        assert y.dtype == np.float32
        np.testing.assert_allclose(y, ref, rtol=0, atol=1e-6, err_msg=str(kwargs))


def test_info_reports_the_header(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_24", "wav", 16000, 2, signal, seconds=0.5)
    meta = info(path)
    assert isinstance(meta, AudioInfo)
    assert (meta.sr, meta.channels, meta.frames) == (16000, 2, 8000)
    assert meta.duration == pytest.approx(0.5)
    assert (meta.format, meta.subtype) == ("WAV", "PCM_24")
    assert meta.path == str(path)


def test_load_float64_and_native_rate(tmp_path, signal):
    path = _write(tmp_path, "WAV", "DOUBLE", "wav", 11025, 1, signal)
    y, sr = load(path, sr=None, dtype=np.float64)
    ref, _ = librosa.load(path, sr=None, dtype=np.float64)
    assert sr == 11025 and y.dtype == np.float64
    np.testing.assert_array_equal(y, ref)


def test_six_channel_downmix_is_the_mean(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 16000, 6, signal)
    y, _ = load(path, sr=None)
    raw, _ = sf.read(path, dtype="float32")
    np.testing.assert_array_equal(y, raw.T.mean(axis=0))
    y_multi, _ = load(path, sr=None, mono=False)
    assert y_multi.shape == (6, 16000)


def test_duration_and_offset_select_frames_like_librosa(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 8000, 1, signal)
    y, _ = load(path, sr=None, offset=0.5, duration=0.25)
    full, _ = load(path, sr=None)
    np.testing.assert_array_equal(y, full[4000:6000])
    y_tail, _ = load(path, sr=None, offset=0.9, duration=5.0)  # past the end: what is there
    assert y_tail.size == 800


def test_silent_file_is_valid(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 8000, subtype="PCM_16")
    y, _ = load(path, sr=22050)
    assert np.all(y == 0) and y.size == 22050
    assert is_silent(y)


# ----------------------------------------------------------------------------- bad input
def _bad_files(tmp_path, signal):
    files = {}
    files["missing"] = (tmp_path / "nope.wav", "not found")
    (tmp_path / "a_dir.wav").mkdir()
    files["directory"] = (tmp_path / "a_dir.wav", "directory")
    (tmp_path / "empty.wav").write_bytes(b"")
    files["zero bytes"] = (tmp_path / "empty.wav", "0 bytes")
    sf.write(tmp_path / "noframes.wav", np.zeros((0, 1), dtype=np.float32), 8000)
    files["zero frames"] = (tmp_path / "noframes.wav", "0 frames")
    rng = np.random.default_rng(0)
    (tmp_path / "random.wav").write_bytes(rng.bytes(4000))
    files["random bytes"] = (tmp_path / "random.wav", "format")
    (tmp_path / "text.flac").write_text("this is not audio\n" * 50)
    files["text"] = (tmp_path / "text.flac", "format")
    good = tmp_path / "good.wav"
    sf.write(good, signal(sr=8000, seconds=1.0), 8000, subtype="PCM_16")
    blob = good.read_bytes()
    (tmp_path / "header_only.wav").write_bytes(blob[:30])
    files["header only"] = (tmp_path / "header_only.wav", "format")
    for name, value in (("nan", np.nan), ("inf", np.inf)):
        data = signal(sr=8000, seconds=0.5)
        data[100] = value
        sf.write(tmp_path / f"{name}.wav", data, 8000, subtype="FLOAT")
        files[f"{name} samples"] = (tmp_path / f"{name}.wav", "non-finite")
    return files


def test_each_kind_of_bad_file_names_the_file_and_the_reason(tmp_path, signal):
    for kind, (path, reason) in _bad_files(tmp_path, signal).items():
        with pytest.raises(AudioDecodeError) as err:
            load(path)
        assert err.value.path == str(path), kind
        assert str(path) in str(err.value), kind
        assert reason in err.value.reason, (kind, err.value.reason)


def test_truncated_mp3_keeps_what_decodes(tmp_path, signal):
    # MP3 lengths are estimates, so a short MP3 read is accepted, as librosa does
    path = _write(tmp_path, "MP3", "MPEG_LAYER_III", "mp3", 22050, 1, signal)
    blob = path.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(blob[: len(blob) // 2])
    y, _ = load(cut, sr=None)
    ref, _ = librosa.load(cut, sr=None)
    assert 0 < y.size < 22050
    np.testing.assert_array_equal(y, ref)


def test_truncated_wav_keeps_the_part_present_with_a_warning(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 8000, 1, signal)
    blob = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(blob[: 44 + 2 * 3000])  # header + 3000 frames
    y, _ = load(cut, sr=None)
    ref, _ = librosa.load(cut, sr=None)  # librosa reads what is there too
    np.testing.assert_array_equal(y, ref)
    full, _ = load(path, sr=None)
    np.testing.assert_array_equal(y, full[:3000])
    out = decode(cut, sr=None)
    assert out.warnings == ("truncated: header says 8000 frames, file holds 3000",)
    assert out.truncated and out.frames == 3000 and out.decoder == "soundfile"
    assert info(cut).warnings == out.warnings
    assert not decode(path, sr=None).warnings


def test_offset_beyond_the_end(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 8000, 1, signal)
    with pytest.raises(AudioDecodeError, match="beyond the end"):
        load(path, offset=2.0)


def test_size_guard(tmp_path, signal):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 8000, 2, signal)
    with pytest.raises(AudioDecodeError, match="too large"):
        load(path, max_bytes=1000)
    y, _ = load(path, sr=None, max_bytes=1000, duration=0.01)  # a part fits
    assert y.size == 80


def test_info_on_bad_file(tmp_path):
    (tmp_path / "junk.wav").write_bytes(b"RIFF0000WAVEjunkjunk" * 3)
    with pytest.raises(AudioDecodeError, match="junk.wav"):
        info(tmp_path / "junk.wav")


@pytest.mark.parametrize(
    "kwargs",
    [dict(sr=0), dict(sr=-8000), dict(offset=-1.0), dict(duration=0.0), dict(dtype=np.int16)],
)
def test_bad_parameters(tmp_path, signal, kwargs):
    path = _write(tmp_path, "WAV", "PCM_16", "wav", 8000, 1, signal)
    with pytest.raises(ParameterError):
        load(path, **kwargs)


# ----------------------------------------------------------------------------- array helpers
@pytest.mark.parametrize("orig_sr,target_sr", [(44100, 22050), (8000, 22050), (22050, 16000)])
def test_resample_matches_librosa(signal, orig_sr, target_sr):
    y = signal(sr=orig_sr, seconds=0.5)
    ref = librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")
    out = resample(y, orig_sr=orig_sr, target_sr=target_sr)
    assert out.shape == ref.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-6)
    stereo = np.stack([y, -0.5 * y])  # (2, n): every channel like a mono call
    out2 = resample(stereo, orig_sr=orig_sr, target_sr=target_sr)
    np.testing.assert_allclose(out2[0], out, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out2[1], -0.5 * out, rtol=0, atol=1e-6)


def test_resample_same_rate_is_identity(signal):
    y = signal(sr=8000, seconds=0.1)
    assert resample(y, orig_sr=8000, target_sr=8000) is y
    with pytest.raises(ParameterError, match="target_sr"):
        resample(y, orig_sr=8000, target_sr=0)


def test_to_mono(signal):
    y = signal(sr=8000, seconds=0.1, channels=3).T  # (3, n)
    np.testing.assert_array_equal(to_mono(y), librosa.to_mono(y))
    mono = signal(sr=8000, seconds=0.1)
    assert to_mono(mono) is mono


def test_check_audio():
    check_audio(np.zeros(10, dtype=np.float32))
    check_audio(np.zeros((2, 10), dtype=np.int16))
    bad = np.ones(10, dtype=np.float32)
    bad[3] = np.nan
    with pytest.raises(AudioDecodeError, match="NaN at flat index 3") as err:
        check_audio(bad, path="x.wav")
    assert err.value.path == "x.wav"
    bad[3] = -np.inf
    with pytest.raises(AudioDecodeError, match="infinite"):
        check_audio(bad)
    with pytest.raises(ParameterError, match="shape"):
        check_audio(np.zeros((2, 2, 10), dtype=np.float32))
    check_audio(np.zeros((2, 2, 10), dtype=np.float32), max_ndim=None)
    with pytest.raises(ParameterError, match="dtype"):
        check_audio(np.zeros(10, dtype=np.complex64))
    with pytest.raises(ParameterError, match="ndarray"):
        check_audio([0.0, 1.0])


def test_is_silent():
    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(100, dtype=np.float32))
    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent((1e-5 * rng.standard_normal(1000)).astype(np.float32))  # about -100 dBFS
    assert not is_silent((0.1 * rng.standard_normal(1000)).astype(np.float32))
    assert not is_silent(np.full(100, 1e-3, dtype=np.float32), threshold_db=-80)  # -60 dBFS
    assert is_silent(np.full(100, 1e-3, dtype=np.float32), threshold_db=-40)
