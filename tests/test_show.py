"""apps.show.show_file: the 4-panel picture of one audio file."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import soundfile as sf

from soundclass import audio
from soundclass.apps.show import show_file
from soundclass.errors import AudioDecodeError, ParameterError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _no_pyplot_no_warnings():
    """show_file never opens a pyplot figure and emits no warning."""
    before = set(plt.get_fignums())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    assert set(plt.get_fignums()) == before


def _png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC
    return len(data), int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_show_file_writes_a_four_panel_png(tmp_path, signal):
    path = tmp_path / "clip.wav"
    sf.write(path, signal(sr=16000, seconds=1.5, channels=2), 16000, subtype="PCM_16")
    out = show_file(path, tmp_path / "out" / "clip.png", n_mels=64, n_mfcc=13)
    size, width, height = _png_size(out)
    assert size > 50_000 and width > 1000 and height > 1000


def test_show_file_silent_short_and_excerpt(tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(8000, dtype=np.float32), 8000)
    short = tmp_path / "short.flac"
    sf.write(short, 0.1 * np.random.default_rng(0).standard_normal(300), 8000)
    for p in (silent, short):
        out = show_file(p, tmp_path / f"{p.stem}.png", dpi=50)
        assert _png_size(out)[0] > 10_000
    out = show_file(silent, tmp_path / "part.png", offset=0.25, duration=0.5, sr=4000,
                          dpi=50)
    assert _png_size(out)[0] > 10_000


def test_show_file_limits_long_files(tmp_path, monkeypatch):
    path = tmp_path / "long.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(4000 * 3), 4000)
    calls = []
    real_load = audio.load

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(audio, "load", spy)
    show_file(path, tmp_path / "a.png", max_seconds=1.0, offset=0.5, dpi=40)
    show_file(path, tmp_path / "b.png", max_seconds=1.0, duration=2.0, dpi=40)
    assert [c["duration"] for c in calls] == [1.0, 2.0]


def test_show_file_errors(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio at all")
    with pytest.raises(AudioDecodeError) as info:
        show_file(bad, tmp_path / "bad.png")
    assert "bad.wav" in str(info.value)
    assert not (tmp_path / "bad.png").exists()
    with pytest.raises(ParameterError, match="n_mfcc"):
        show_file(bad, tmp_path / "x.png", n_mels=10, n_mfcc=20)


def test_show_file_real_clips(tmp_path, fsdd_dir, donateacry_dir):
    for path in (sorted((fsdd_dir / "7").glob("*.wav"))[0],
                 sorted((donateacry_dir / "burping").glob("*.wav"))[0]):
        out = show_file(path, tmp_path / f"{path.stem}.png")
        assert _png_size(out)[0] > 50_000
