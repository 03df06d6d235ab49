"""soundclass.audio with in-memory sources and upload caps (the web demo's call), and sniffing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from soundclass import audio
from soundclass.audio.sniff import sniff
from soundclass.errors import AudioDecodeError, ParameterError


def _wav(y, sr, subtype="PCM_16", fmt="WAV"):
    buf = io.BytesIO()
    sf.write(buf, y, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview", "BytesIO", "file"])
def test_memory_sources_equal_the_file(tmp_path, signal, kind):
    y = signal(sr=16000, seconds=0.5, channels=2)
    path = tmp_path / "clip.wav"
    sf.write(path, y, 16000, subtype="PCM_24")
    data = path.read_bytes()
    source = {
        "bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data),
        "BytesIO": io.BytesIO(data), "file": open(path, "rb"),
    }[kind]
    ref, sr_ref = audio.load(path, sr=22050, mono=False)
    got, sr = audio.load(source, sr=22050, mono=False)
    assert sr == sr_ref
    np.testing.assert_array_equal(got, ref)


def test_file_object_is_read_from_its_position(signal):
    data = _wav(signal(sr=8000, seconds=0.25), 8000)
    buf = io.BytesIO(b"JUNK" * 3 + data)
    buf.seek(12)
    y, _ = audio.load(buf, sr=None)
    assert y.size == 2000


def test_the_web_demo_call(signal):
    """audio.load(io.BytesIO(data), sr=None, mono=False, max_seconds=, max_sr=, max_channels=)."""
    caps = dict(sr=None, mono=False, max_seconds=1.25, max_sr=384_000, max_channels=32)
    stereo = signal(sr=8000, seconds=3.0, channels=2)
    data = _wav(stereo, 8000)
    y, sr = audio.load(io.BytesIO(data), **caps)
    assert sr == 8000 and y.shape == (2, 10000)  # int(1.25 * 8000) frames, the rest ignored
    out = audio.decode(io.BytesIO(data), **caps)
    assert out.frames == 24000 and out.duration == pytest.approx(3.0)
    assert out.decoded_frames == 10000 and out.channels == 2 and not out.warnings
    # a cut upload: the part present plus the same warning as from a file
    cut = data[: 44 + 4 * 1000]
    y, _ = audio.load(io.BytesIO(cut), **caps)
    assert y.shape == (2, 1000)
    assert audio.decode(io.BytesIO(cut), **caps).warnings == (
        "truncated: header says 24000 frames, file holds 1000",
    )
    with pytest.raises(AudioDecodeError, match="outside \\[1, 32\\]") as err:
        audio.load(io.BytesIO(_wav(np.zeros((100, 33), np.float32), 8000)), **caps)
    assert str(err.value).startswith("<upload>: ")
    with pytest.raises(AudioDecodeError, match="outside \\[1000, 384000\\]"):
        audio.load(io.BytesIO(_wav(np.zeros(1000, np.float32), 768000)), **caps)
    with pytest.raises(AudioDecodeError, match="empty upload"):
        audio.load(io.BytesIO(b""), **caps)
    with pytest.raises(AudioDecodeError, match="^clip.m4a: "):
        audio.load(b"not audio" * 20, name="clip.m4a")


def test_max_bytes_caps_native_and_resampled(signal):
    data = _wav(signal(sr=8000, seconds=1.0), 8000)
    with pytest.raises(AudioDecodeError, match="decoded would take"):
        audio.load(data, sr=None, max_bytes=8000 * 4 - 1)
    with pytest.raises(AudioDecodeError, match="resampled to 16000 Hz"):
        audio.load(data, sr=16000, max_bytes=8000 * 4 * 2 - 1)
    y, _ = audio.load(data, sr=16000, max_bytes=8000 * 4 * 2)
    assert y.nbytes == 64000


@pytest.mark.parametrize("kwargs", [dict(max_seconds=0), dict(max_sr=-1), dict(max_channels=1.5),
                                    dict(max_bytes=0), dict(sr=float("inf"))])
def test_bad_caps(signal, kwargs):
    with pytest.raises(ParameterError):
        audio.load(_wav(signal(sr=8000, seconds=0.1), 8000), **kwargs)


def test_text_file_object_and_other_types_are_refused():
    with pytest.raises(ParameterError, match="binary"):
        audio.load(io.StringIO("RIFF...."))
    with pytest.raises(ParameterError, match="path, bytes or a binary file"):
        audio.load(12.5)


def test_huge_values_are_refused_after_every_transform():
    y = np.full(100, 1e31, dtype=np.float32)
    with pytest.raises(AudioDecodeError, match="huge"):
        audio.check_audio(y, path="x.wav")
    with pytest.raises(AudioDecodeError, match="huge"):
        audio.resample(y, orig_sr=8000, target_sr=16000)
    audio.check_audio(np.full(10, 1e30, dtype=np.float32))  # the bound itself passes


@pytest.mark.parametrize(
    "head,container,decoders",
    [
        (b"RIFF\0\0\0\0WAVEfmt ", "WAV", ("soundfile", "pyav")),
        (b"fLaC\0\0\0\x22", "FLAC", ("soundfile", "pyav")),
        (b"OggS\0\x02", "OGG", ("soundfile", "pyav")),
        (b"FORM\0\0\0\0AIFF", "AIFF", ("soundfile", "pyav")),
        (b"ID3\x04\0\0\0\0\0\0\xff\xfb\x90\x64", "MP3", ("soundfile", "pyav")),
        (b"\xff\xfb\x90\x64", "MP3", ("soundfile", "pyav")),
        (b"\xff\xf1\x50\x80", "AAC", ("pyav",)),  # ADTS: layer bits 00
        (b"ID3\x04\0\0\0\0\0\0\xff\xf1\x50\x80", "AAC", ("pyav",)),
        (b"\0\0\0\x1cftypM4A ", "MP4", ("pyav",)),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01webm", "WEBM", ("pyav",)),
        (bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c"), "ASF", ("pyav",)),
        (b"#!AMR\n", "AMR", ("pyav",)),
        (b"hello world", "unknown", ("soundfile",)),
    ],
)
def test_sniff_by_content(head, container, decoders):
    got = sniff(head)
    assert (got.container, got.decoders) == (container, decoders)
