"""A corpus of unusual files, each with its expected outcome: decoded with length X
(and warning Y), or an AudioDecodeError naming the file.  Files are generated in
code; the same bytes are also decoded from memory and must give the same result."""

from __future__ import annotations

import io
import os
import struct

import numpy as np
import pytest
from audio_corpus import (
    av_bytes,
    decoded_length,
    ffmpeg_reference,
    mp3_in_wav,
    mp3_without_xing,
    pcm_wav,
    riff,
    sf_bytes,
    tone,
)

from soundclass import audio
from soundclass.audio import soundfile_backend
from soundclass.errors import AudioDecodeError

SR = 8000
Y = tone(SR, 1.0)  # 8000 frames


def _cut(data: bytes, keep: float) -> bytes:
    return data[: int(len(data) * keep)]


def _mp3_wav_case():
    mp3 = mp3_without_xing(tone(22050, 1.0), 22050)
    data = mp3_in_wav(mp3, 22050, 1, fact_frames=decoded_length(mp3) + 1152)
    return data, decoded_length(data)


def _huge_floats():
    y = Y.copy()
    y[10] = 1e38  # finite, but overflows soxr
    return pcm_wav(y, SR, float32=True)


def _no_audio_track():
    return av_bytes(tone(SR, 0.5), SR, "mp4", "aac", video=True)


# (id, builder -> bytes, expected decoder, expected frames at native rate (None: checked
#  against FFmpeg's decode), warning substring or None)
DECODED = [
    ("pcm16", lambda: pcm_wav(Y, SR), "soundfile", 8000, None),
    ("riff-size-wrong", lambda: pcm_wav(Y, SR)[:4] + struct.pack("<I", 99) + pcm_wav(Y, SR)[8:],
     "soundfile", 8000, None),
    ("pcm16-cut-in-half", lambda: _cut(pcm_wav(Y, SR), 0.5), "soundfile", 3989,  # (16044 // 2 - 44) bytes / 2
     "truncated: header says 8000 frames, file holds 3989"),
    ("data-size-claims-double", lambda: pcm_wav(Y, SR, data_size=32000), "soundfile", 8000,
     "truncated: header says 16000 frames, file holds 8000"),
    ("data-size-0xfffffff0", lambda: pcm_wav(Y, SR, data_size=0xFFFFFFF0, float32=True), "soundfile",
     8000, "truncated: header says"),
    ("float-cut", lambda: _cut(pcm_wav(Y, SR, float32=True), 0.75), "soundfile", None, "truncated"),
    ("mp3-in-wav-fact-counts-padding", lambda: _mp3_wav_case()[0], "soundfile",
     _mp3_wav_case, None),
    ("ima-adpcm", lambda: sf_bytes(Y, SR, "WAV", "IMA_ADPCM"), "soundfile", "sf", None),
    ("ms-adpcm", lambda: sf_bytes(Y, SR, "WAV", "MS_ADPCM"), "soundfile", "sf", None),
    ("gsm610", lambda: sf_bytes(Y, SR, "WAV", "GSM610"), "soundfile", "sf", None),
    # libsndfile decodes whole FLAC frames (4096 here): the last complete one is lost too
    ("flac-cut", lambda: _cut(sf_bytes(Y, SR, "FLAC"), 0.75), "soundfile", 3072, "corrupt data after"),
    # a cut Ogg file's last page gives the length: nothing says it was cut
    ("ogg-vorbis-cut", lambda: _cut(sf_bytes(tone(22050, 3.0), 22050, "OGG"), 0.5), "soundfile",
     16000, None),
    ("aac-named-mp3", lambda: av_bytes(tone(44100, 1.04), 44100, "adts", "aac"), "pyav", "ff", None),
    ("m4a-aac", lambda: av_bytes(tone(44100, 1.0), 44100, "ipod", "aac"), "pyav", "ff", None),
    ("mp4-video-with-sound", lambda: av_bytes(tone(16000, 1.0), 16000, "mp4", "aac", video=True),
     "pyav", "ff", None),
    ("mov-aac", lambda: av_bytes(tone(22050, 1.0, channels=2), 22050, "mov", "aac"), "pyav", "ff", None),
    ("webm-opus", lambda: av_bytes(tone(48000, 1.0), 48000, "webm", "libopus"), "pyav", "ff", None),
    # 8 planar channels: PyAV's frame.planes would read past FFmpeg's pointer array
    ("webm-opus-7.1", lambda: av_bytes(tone(48000, 0.5, channels=8), 48000, "webm", "libopus"),
     "pyav", "ff", None),
    ("ogg-opus", lambda: sf_bytes(tone(48000, 1.0), 48000, "OGG", "OPUS"), "soundfile", 48000, None),
    ("wma", lambda: av_bytes(tone(44100, 1.0), 44100, "asf", "wmav2", bit_rate=64000), "pyav", "ff", None),
    ("amr-nb", lambda: av_bytes(tone(8000, 1.0), 8000, "amr", "libopencore_amrnb", bit_rate=12200),
     "pyav", "ff", None),
]

ERRORS = [
    ("sr-1-in-header", lambda: pcm_wav(Y, SR, header_sr=1), "sample rate sr=1 Hz"),
    ("sr-10MHz-in-header", lambda: pcm_wav(Y, SR, header_sr=10_000_000), "outside [1000, 768000]"),
    ("huge-finite-floats", _huge_floats, "huge sample"),
    ("nan", lambda: pcm_wav(np.where(np.arange(SR) == 7, np.nan, Y), SR, float32=True), "non-finite"),
    ("random-bytes", lambda: np.random.default_rng(0).bytes(4000), "format"),
    ("header-only", lambda: pcm_wav(Y, SR)[:30], "format"),
    ("riff-no-fmt", lambda: riff([(b"data", b"\0" * 100)]), "format"),
    ("mp4-without-audio", lambda: _no_audio_video_only(), "no audio track"),
    ("flac-cut-in-first-frame", lambda: _cut(sf_bytes(Y, SR, "FLAC"), 0.5), "lost sync"),
    ("ogg-cut-to-headers", lambda: _cut(sf_bytes(tone(22050, 1.0), 22050, "OGG"), 0.5), "0 frames"),
    ("m4a-cut-to-header", lambda: av_bytes(tone(44100, 1.0), 44100, "ipod", "aac")[:40], "format"),
]


def _no_audio_video_only() -> bytes:
    buf = io.BytesIO()
    import av

    with av.open(buf, "w", format="mp4") as out:
        vs = out.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 32, 32, "yuv420p"
        img = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for i in range(5):
            img.pts = i
            for packet in vs.encode(img):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _expected_frames(expected, data: bytes):
    if expected == "sf":
        return decoded_length(data)
    if callable(expected):
        return expected()[1]
    return expected


@pytest.mark.parametrize("case,build,decoder,frames,warning", DECODED, ids=[c[0] for c in DECODED])
def test_decodes_with_expected_length_and_warning(tmp_path, case, build, decoder, frames, warning):
    data = build()
    path = tmp_path / f"{case}.mp3"  # the extension is never consulted
    path.write_bytes(data)
    out = audio.decode(path, sr=None, mono=False)
    assert out.decoder == decoder
    n = out.y.shape[-1]
    if frames == "ff":  # FFmpeg's own decode (librosa's audioread path) gives the length
        ref, sr_ref = ffmpeg_reference(data)
        assert out.sr == sr_ref and n == ref.shape[-1]
        np.testing.assert_allclose(out.y.reshape(ref.shape), ref, rtol=0, atol=2**-15 + 1e-7)
    elif frames is None:
        assert 0 < n < out.sr_native * 1.0
    else:
        assert n == _expected_frames(frames, data)
    if warning is None:
        assert not any(w.startswith("truncated") for w in out.warnings), out.warnings
    else:
        assert any(warning in w for w in out.warnings), out.warnings
    assert np.isfinite(out.y).all()
    # the same bytes from memory: same samples, same warnings
    mem = audio.decode(io.BytesIO(data), sr=None, mono=False)
    np.testing.assert_array_equal(mem.y, out.y)
    assert mem.warnings == out.warnings
    y, sr = audio.load(path)  # load() stays librosa-shaped: no error for these
    assert sr == 22050 and y.ndim == 1 and y.size > 0


def test_aac_named_mp3_keeps_its_whole_length(tmp_path):
    path = tmp_path / "speech.mp3"
    path.write_bytes(av_bytes(tone(44100, 1.04), 44100, "adts", "aac"))
    y, sr = audio.load(path, sr=None)
    assert y.size / sr == pytest.approx(1.04, abs=0.05)  # libsndfile by name: 0.026 s


@pytest.mark.parametrize("case,build,reason", ERRORS, ids=[c[0] for c in ERRORS])
def test_refused_with_an_error_naming_the_file(tmp_path, case, build, reason):
    path = tmp_path / f"{case}.wav"
    path.write_bytes(build())
    with pytest.raises(AudioDecodeError) as err:
        audio.load(path)
    assert err.value.path == str(path) and str(path) in str(err.value)
    assert reason in err.value.reason, err.value.reason
    with pytest.raises(AudioDecodeError) as err:
        audio.load(path.read_bytes())
    assert str(err.value).startswith("<upload>: ") and reason in err.value.reason


def test_symlink_loop_broken_link_and_permission(tmp_path, monkeypatch):
    loop_a, loop_b = tmp_path / "a.wav", tmp_path / "b.wav"
    os.symlink(loop_b, loop_a)
    os.symlink(loop_a, loop_b)
    with pytest.raises(AudioDecodeError, match="symbolic link loop"):
        audio.load(loop_a)
    broken = tmp_path / "broken.wav"
    os.symlink(tmp_path / "gone.wav", broken)
    with pytest.raises(AudioDecodeError, match="broken symbolic link"):
        audio.info(broken)
    good = tmp_path / "good.wav"
    good.write_bytes(pcm_wav(Y, SR))
    if os.geteuid() != 0:  # root reads anything: then the errno is simulated below
        good.chmod(0)
        with pytest.raises(AudioDecodeError, match="permission denied"):
            audio.load(good)
        good.chmod(0o644)

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(AudioDecodeError, match="permission denied") as err:
        audio.load(good)
    assert err.value.path == str(good)


def test_non_utf8_file_name(tmp_path):
    path = os.path.join(os.fsencode(tmp_path), b"bad_\xff\xfe_name.wav")
    with open(path, "wb") as f:
        f.write(pcm_wav(Y, SR))
    name = os.fsdecode(path)  # a str with surrogate escapes, as os.listdir gives it
    y, sr = audio.load(name, sr=None)
    assert y.size == 8000 and sr == SR
    assert audio.info(name).frames == 8000
    with open(path, "wb") as f:
        f.write(b"junk" * 10)
    with pytest.raises(AudioDecodeError) as err:
        audio.load(name)
    assert err.value.path == name


def test_memory_error_from_a_hostile_header_is_ours(tmp_path, monkeypatch):
    path = tmp_path / "hostile.wav"
    path.write_bytes(pcm_wav(Y, SR))

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(soundfile_backend.np, "empty", no_memory)
    with pytest.raises(AudioDecodeError, match="out of memory") as err:
        audio.load(path)
    assert err.value.path == str(path)


def test_damaged_mp3_notes_become_a_warning_not_stderr(tmp_path, capfd):
    data = bytearray(sf_bytes(tone(22050, 1.0), 22050, "MP3"))
    mid = len(data) // 2
    data[mid : mid + 300] = np.random.default_rng(0).bytes(300)
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(data))
    capfd.readouterr()
    out = audio.decode(path, sr=None)
    captured = capfd.readouterr()
    assert "Illegal Audio-MPEG-Header" not in captured.err and "resync" not in captured.err
    assert any(w.startswith("damaged MPEG data") for w in out.warnings), out.warnings
    assert 0 < out.y.size <= 22050 + 1152


def test_size_cap_applies_to_the_resampled_output(tmp_path):
    path = tmp_path / "low.wav"
    path.write_bytes(pcm_wav(tone(1000, 1.0), 1000))  # 1000 frames, 4 kB as float32
    with pytest.raises(AudioDecodeError, match="resampled to 768000 Hz") as err:
        audio.load(path, sr=768000, max_bytes=1_000_000)  # would be 3 MB
    assert err.value.path == str(path)
    y, _ = audio.load(path, sr=48000, max_bytes=1_000_000)
    assert y.size == 48000


def test_concurrent_decodes_keep_their_own_warnings(tmp_path, capfd):
    from concurrent.futures import ThreadPoolExecutor

    data = bytearray(sf_bytes(tone(22050, 1.0), 22050, "MP3"))
    data[len(data) // 2 : len(data) // 2 + 300] = np.random.default_rng(1).bytes(300)
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(bytes(data))
    good = tmp_path / "good.wav"
    good.write_bytes(pcm_wav(Y, SR))
    jobs = [damaged, good] * 8
    capfd.readouterr()
    alone = {p: audio.decode(p, sr=None) for p in (damaged, good)}
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda p: audio.decode(p, sr=None), jobs))
    assert "MPEG" not in capfd.readouterr().err
    for path, out in zip(jobs, outs, strict=True):
        np.testing.assert_array_equal(out.y, alone[path].y)
        assert out.warnings == alone[path].warnings
    assert alone[damaged].warnings and not alone[good].warnings
