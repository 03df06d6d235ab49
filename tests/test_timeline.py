"""inference.timeline: streaming windows, scoring, merged segments, CSV, plot."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from soundclass.audio import load
from soundclass.dsp.features import melspectrogram
from soundclass.errors import AudioDecodeError, ParameterError
from soundclass.inference.timeline import (
    Segment,
    Window,
    iter_windows,
    merge_segments,
    score_windows,
    write_segments_csv,
    write_windows_csv,
)
from soundclass.plots import new_figure
from soundclass.plots.timeline import plot_timeline

CLASSES = ["tone", "noise", "chirp"]


def _make(kind: str, seconds: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if kind == "tone":
        y = np.sin(2 * np.pi * 440.0 * t + rng.uniform(0, 2 * np.pi))
    elif kind == "noise":
        y = rng.standard_normal(t.size) * 0.5
    else:  # a chirp repeating every 0.25 s, 300 -> 3000 Hz, so any 1 s window looks alike
        phase_t = (t + rng.uniform(0, 0.25)) % 0.25
        f0, f1, period = 300.0, 3000.0, 0.25
        y = np.sin(2 * np.pi * (f0 * phase_t + (f1 - f0) * phase_t**2 / (2 * period)))
    return (0.3 * y).astype(np.float32)


def _features(y: np.ndarray, sr: int) -> np.ndarray:
    S = melspectrogram(y=y, sr=sr, n_fft=512, hop_length=256, n_mels=16)
    v = np.log(S.mean(axis=1) + 1e-10)
    return v - v.mean()  # level-free band shape


def _centroid_proba_fn(sr: int):
    """A nearest-centroid classifier on band energies, fitted on separate examples."""
    centroids = np.stack([
        np.mean([_features(_make(k, 1.0, sr, seed=100 + s), sr) for s in range(3)], axis=0) for k in CLASSES
    ])

    def proba_fn(waves):
        X = np.stack([_features(w, sr) for w in waves])
        d = ((X[:, None, :] - centroids[None]) ** 2).sum(-1)
        z = -d / d.mean()
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    return proba_fn


@pytest.fixture
def long_file(tmp_path):
    """9 s at 44.1 kHz: 3 s tone, 3 s noise, 3 s chirp (stereo, to exercise the downmix)."""
    sr_file = 44100
    y = np.concatenate([_make(k, 3.0, sr_file, seed=i) for i, k in enumerate(CLASSES)])
    path = tmp_path / "long.wav"
    sf.write(path, np.stack([y, 0.5 * y], axis=1), sr_file, subtype="PCM_16")
    return path


def test_segments_find_the_classes_at_the_right_times(long_file):
    sr, hop = 16000, 0.5
    windows = iter_windows(long_file, sr=sr, window_seconds=1.0, hop_seconds=hop)
    starts, ends, proba = score_windows(windows, _centroid_proba_fn(sr), batch_size=4)
    assert proba.shape == (starts.size, 3)
    np.testing.assert_allclose(starts, np.arange(starts.size) * hop)
    assert ends[-1] == pytest.approx(9.0)
    labels = [CLASSES[i] for i in proba.argmax(1)]
    segments = merge_segments(starts, ends, labels, proba.max(1), min_windows=2)
    assert [s.label for s in segments] == CLASSES
    for seg, (lo, hi) in zip(segments, [(0, 3), (3, 6), (6, 9)], strict=True):
        assert abs(seg.start - lo) <= hop and abs(seg.end - hi) <= hop, segments
        assert 0.34 < seg.p <= 1.0


def test_windows_are_streamed_in_bounded_blocks(long_file, monkeypatch):
    reads = []
    original = sf.SoundFile.read

    def counting_read(self, frames=-1, *args, **kwargs):
        out = original(self, frames, *args, **kwargs)
        reads.append((frames, len(out)))
        return out

    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    block, sr_file = 4410, 44100
    seen = []
    for w in iter_windows(long_file, sr=16000, window_seconds=1.0, hop_seconds=0.5, block_frames=block):
        read_so_far = sum(n for _, n in reads)
        # the reader is at most one block (+ resampler delay) ahead of the window's end
        assert read_so_far <= w.end * sr_file + 2 * block
        seen.append(w)
    assert all(frames == block for frames, _ in reads)  # never the whole file at once
    assert len(reads) == int(np.ceil(9.0 * sr_file / block)) + (9 * sr_file % block == 0)
    assert len(seen) == 17 and all(w.y.shape == (16000,) for w in seen)


def test_stream_resampling_matches_whole_file_load(long_file):
    sr = 22050
    ref, _ = load(long_file, sr=sr)
    windows = list(iter_windows(long_file, sr=sr, window_seconds=0.7, block_frames=1000, min_seconds=0.01))
    joined = np.concatenate([w.y for w in windows])
    assert abs(joined.size - ref.size) <= 2
    n = min(joined.size, ref.size)
    # continuous stream: no seams; equal to one-shot soxr HQ away from the very end
    np.testing.assert_allclose(joined[: n - 200], ref[: n - 200], atol=2e-3)


def test_tail_window_and_short_file(tmp_path):
    sr = 8000
    path = tmp_path / "short.flac"
    sf.write(path, np.full(int(2.3 * sr), 0.1, dtype=np.float32), sr)
    full = list(iter_windows(path, sr=sr, window_seconds=1.0))
    assert [(w.start, w.end) for w in full] == [(0.0, 1.0), (1.0, 2.0)]  # 0.3 s tail < half a window
    with_tail = list(iter_windows(path, sr=sr, window_seconds=1.0, min_seconds=0.2))
    assert with_tail[-1].start == 2.0 and with_tail[-1].y.size == int(0.3 * sr)
    shorter = list(iter_windows(path, sr=sr, window_seconds=5.0))
    assert len(shorter) == 1 and shorter[0].y.size == int(2.3 * sr)  # whole file, one window
    overlap = list(iter_windows(path, sr=sr, window_seconds=1.0, hop_seconds=0.25))
    assert overlap[-1].end == pytest.approx(2.25)  # no tail: nothing after 2.25 s is new enough


def test_errors(tmp_path):
    with pytest.raises(AudioDecodeError, match="missing.wav"):
        list(iter_windows(tmp_path / "missing.wav", sr=16000, window_seconds=1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    with pytest.raises(AudioDecodeError, match="bad.wav"):
        list(iter_windows(bad, sr=16000, window_seconds=1.0))
    with pytest.raises(ParameterError, match="window_seconds"):
        list(iter_windows(bad, sr=16000, window_seconds=0))
    with pytest.raises(ParameterError, match="proba_fn returned shape"):
        score_windows([Window(0.0, 1.0, np.zeros(10, dtype=np.float32))], lambda ws: np.zeros((2, 3)))


def test_merge_segments_tiles_time_and_smooths_flickers():
    starts = np.arange(8) * 0.5
    ends = starts + 1.0
    labels = ["a", "a", "b", "a", "a", "c", "c", "c"]
    probs = [0.9, 0.8, 0.6, 0.7, 0.9, 0.5, 0.6, 0.7]
    raw = merge_segments(starts, ends, labels, probs)
    assert [s.label for s in raw] == ["a", "b", "a", "c"]
    # boundaries halfway between window centres; the segments tile [0, 4.5]
    assert [(s.start, s.end) for s in raw] == [(0.0, 1.25), (1.25, 1.75), (1.75, 2.75), (2.75, 4.5)]
    assert raw[0].p == pytest.approx(0.85)
    smooth = merge_segments(starts, ends, labels, probs, min_windows=2)
    assert smooth == [Segment(0.0, 2.75, "a", pytest.approx(0.825)), Segment(2.75, 4.5, "c", pytest.approx(0.6))]
    assert merge_segments([], [], [], []) == []
    with pytest.raises(ParameterError, match="one length"):
        merge_segments([0.0], [1.0, 2.0], ["a"], [0.5])


def test_csv_rows_round_trip_with_odd_names(tmp_path):
    name = "caf\u00e9 \udcff, \"odd\".wav"  # comma, quotes, an undecodable byte
    out = tmp_path / "windows.csv"
    write_windows_csv(out, name, [0.0, 1.0], [1.0, 2.0], ["tone", "unknown"], [0.91234, 0.4])
    write_windows_csv(out, "second.wav", [0.0], [1.0], ["noise"], [0.5], append=True)
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["name", "start", "end", "label", "p"]
    assert rows[1] == [name, "0.000", "1.000", "tone", "0.9123"]
    assert rows[2][3] == "unknown" and rows[3][0] == "second.wav" and len(rows) == 4
    seg_out = tmp_path / "segments.csv"
    write_segments_csv(seg_out, "x.wav", [Segment(0.0, 2.5, "tone", 0.8)])
    assert seg_out.read_text(encoding="utf-8").splitlines() == ["name,start,end,label,p", "x.wav,0.000,2.500,tone,0.8000"]


def test_plot_timeline():
    t = np.arange(10) * 0.5 + 0.5
    p = np.tile([[0.7, 0.2, 0.1]], (10, 1))
    p[5:] = [0.1, 0.2, 0.7]
    fig, ax = new_figure()
    assert plot_timeline(t, p, CLASSES, ax=ax, threshold=0.5) is ax
    assert [line.get_label() for line in ax.get_lines()][:3] == ["tone", "chirp", "noise"]
    assert ax.get_xlim() == (0.5, 5.0)
    with pytest.raises(ParameterError, match="shape"):
        plot_timeline(t, p[:, :2], CLASSES, ax=ax)
