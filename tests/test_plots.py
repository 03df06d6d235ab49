"""Pictures: each function draws on the axes it is given, PNGs are real and nothing leaks."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import librosa
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PolyCollection, QuadMesh

from soundclass import plots
from soundclass.errors import ParameterError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ax():
    fig, ax = plots.new_figure(figsize=(6, 4))
    return ax


@pytest.fixture(autouse=True)
def _no_show_no_warnings(monkeypatch):
    """No test may call plt.show, leave a pyplot figure open, or emit a warning."""

    def _forbidden(*args, **kwargs):
        raise AssertionError("plt.show() called")

    monkeypatch.setattr(plt, "show", _forbidden)
    before = set(plt.get_fignums())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    assert set(plt.get_fignums()) == before


def _spec_db(y, sr, n_fft=1024, hop_length=256):
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop_length)) ** 2
    return librosa.power_to_db(S, ref=np.max)


def _tick_hz(ax):
    return [float(t) for t in ax.get_yticks()]


# ----------------------------------------------------------------------------- figures


def test_new_figure_is_not_registered_with_pyplot_and_saves_png(tmp_path):
    fig, axes = plots.new_figure(figsize=(4, 3), nrows=2)
    assert len(axes) == 2
    assert plt.get_fignums() == []
    axes[0].plot([0, 1], [1, 0])
    path = plots.save_figure(fig, tmp_path / "sub" / "x.png")
    data = Path(path).read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 2000


def test_hz_tick_label():
    assert [plots.hz_tick_label(v) for v in (0, 50, 500, 1000, 2500, 16000)] == [
        "0", "50", "500", "1k", "2.5k", "16k"]


# ----------------------------------------------------------------------------- waveform


def test_waveform_short_signal_is_one_line_in_seconds(ax, signal):
    y = signal(sr=8000, seconds=0.25)
    plots.plot_waveform(y, sr=8000, ax=ax)
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == y.size]
    assert len(lines) == 1
    np.testing.assert_allclose(lines[0].get_xdata()[-1], (y.size - 1) / 8000)
    assert ax.get_xlim() == pytest.approx((0.0, 0.25))
    assert ax.get_xlabel() == "Time (s)"


def test_waveform_long_signal_is_an_envelope_keeping_the_peak(ax):
    sr, n = 1000, 200_000
    y = np.zeros(n, dtype=np.float32)
    y[123_457] = -0.9  # a single-sample click must survive decimation
    plots.plot_waveform(y, sr=sr, ax=ax, max_points=1000)
    polys = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert len(polys) == 1
    verts = polys[0].get_paths()[0].vertices
    assert len(verts) <= 2 * 1000 + 10  # decimated
    assert verts[:, 1].min() == pytest.approx(-0.9)
    assert ax.get_ylim()[0] <= -0.9
    assert ax.get_xlim()[1] == pytest.approx(n / sr)


def test_waveform_multichannel_and_silent(ax, signal):
    y = signal(sr=4000, seconds=0.5, channels=2).T  # (2, n)
    plots.plot_waveform(y, sr=4000, ax=ax)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ch 1", "ch 2"]
    fig, ax2 = plots.new_figure()
    plots.plot_waveform(np.zeros(100), sr=100, ax=ax2)  # silent: finite limits, no warning
    assert ax2.get_ylim() == (-1.0, 1.0)


def test_waveform_rejects_bad_parameters(ax):
    with pytest.raises(ParameterError, match="sr=0"):
        plots.plot_waveform(np.zeros(10), sr=0, ax=ax)
    with pytest.raises(ParameterError, match="shape"):
        plots.plot_waveform(np.zeros((2, 2, 2)), sr=10, ax=ax)


# ----------------------------------------------------------------------------- spectrograms


def test_log_spectrogram_axis_ticks_and_colorbar(ax, signal):
    sr = 22050
    S_db = _spec_db(signal(sr=sr, seconds=1.0), sr)
    mesh = plots.plot_spectrogram(S_db, sr=sr, hop_length=256, ax=ax)
    assert isinstance(mesh, QuadMesh)
    assert ax.get_yscale() == "symlog"
    assert ax.get_ylim() == pytest.approx((0.0, sr / 2))
    ticks = _tick_hz(ax)
    assert 0.0 in ticks and 1000.0 in ticks and max(ticks) <= sr / 2
    labels = [ax.yaxis.get_major_formatter()(t) for t in ticks]
    assert "1k" in labels and "0" in labels
    assert ax.get_ylabel() == "Frequency (Hz)"
    assert mesh.colorbar is not None
    assert mesh.colorbar.formatter.fmt == "%+2.0f dB"
    assert mesh.colorbar.formatter(-20.0) == "-20 dB"
    vmin, vmax = mesh.get_clim()
    assert vmax == pytest.approx(0.0) and vmin == pytest.approx(-80.0)
    assert ax.get_xlim()[1] == pytest.approx(S_db.shape[1] * 256 / sr)


def test_log_spectrogram_keeps_thin_high_tones_visible(ax):
    """1025 bins on a log axis: rows are max-pooled, so a 3 kHz tone is still drawn."""
    sr = 16000
    t = np.arange(sr) / sr
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)
    S_db = _spec_db(y, sr, n_fft=2048, hop_length=512)
    mesh = plots.plot_spectrogram(S_db, sr=sr, hop_length=512, ax=ax, colorbar=False)
    drawn = mesh.get_array().reshape(-1, S_db.shape[1] if S_db.shape[1] <= 2000 else -1)
    assert drawn.shape[0] < S_db.shape[0]  # pooled
    coords = mesh.get_coordinates()[:, 0, 1]
    row = np.searchsorted(coords, 3000.0) - 1
    assert drawn[row].max() > -15.0


def test_linear_and_mel_axes(signal):
    sr = 16000
    y = signal(sr=sr, seconds=0.5)
    fig, (a1, a2) = plots.new_figure(nrows=2)
    plots.plot_spectrogram(_spec_db(y, sr), sr=sr, hop_length=256, ax=a1, y_axis="linear")
    assert a1.get_yscale() == "linear"
    assert all(t == int(t) for t in _tick_hz(a1))
    M = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, n_mels=64, fmax=7000),
                            ref=np.max)
    mesh = plots.plot_mel(M, sr=sr, hop_length=512, fmax=7000, ax=a2)
    assert a2.get_yscale() == "function"
    assert a2.get_ylim() == pytest.approx((0.0, 7000.0))
    # mel-spaced: 1 kHz sits where its mel value puts it, not where it would on a Hz axis
    frac = (a2.transScale + a2.transLimits).transform((0, 1000.0))[1]
    expected = librosa.hz_to_mel(1000.0) / librosa.hz_to_mel(7000.0)
    assert frac == pytest.approx(expected, abs=1e-6)
    # inner band edges are midway (in mel) between librosa's band centres; outer ones at fmin/fmax
    edges = mesh.get_coordinates()[:, 0, 1]
    assert (edges[0], edges[-1]) == (0.0, 7000.0)
    centres = librosa.mel_frequencies(64 + 2, fmin=0.0, fmax=7000.0)[1:-1]
    mel_c = librosa.hz_to_mel(centres)
    np.testing.assert_allclose(librosa.hz_to_mel(edges[1:-1]), (mel_c[:-1] + mel_c[1:]) / 2,
                               rtol=1e-6)
    assert all(t in (0.0, 200.0, 400.0, 500.0, 1000.0, 2000.0, 4000.0, 5000.0)
               for t in _tick_hz(a2))


def test_mel_axis_htk(ax):
    M = np.zeros((40, 10))
    plots.plot_spectrogram(M, sr=8000, hop_length=80, ax=ax, y_axis="mel", htk=True)
    frac = (ax.transScale + ax.transLimits).transform((0, 1000.0))[1]
    assert frac == pytest.approx(librosa.hz_to_mel(1000.0, htk=True)
                                 / librosa.hz_to_mel(4000.0, htk=True), abs=1e-6)


def test_spectrogram_silent_and_nonfinite_inputs_render(tmp_path):
    fig, (a1, a2) = plots.new_figure(nrows=2)
    flat = np.full((129, 20), -100.0)  # a silent clip: one value everywhere
    m1 = plots.plot_spectrogram(flat, sr=8000, hop_length=64, ax=a1)
    lo, hi = m1.get_clim()
    assert hi > lo
    bad = np.zeros((129, 20))
    bad[3, 4], bad[5, 6] = np.nan, -np.inf
    m2 = plots.plot_spectrogram(bad, sr=8000, hop_length=64, ax=a2)
    assert np.isfinite(m2.get_array()).all()
    plots.save_figure(fig, tmp_path / "x.png")


def test_long_spectrogram_is_pooled_in_time(ax):
    S = np.full((33, 10_000), -60.0)
    S[:, 7777] = 0.0
    mesh = plots.plot_spectrogram(S, sr=1000, hop_length=10, ax=ax, y_axis="linear", colorbar=False)
    arr = np.asarray(mesh.get_array())
    assert arr.size <= 33 * 2000
    assert arr.max() == 0.0  # the single loud frame survived
    assert ax.get_xlim()[1] == pytest.approx(100.0)


def test_spectrogram_parameter_errors(ax):
    S = np.zeros((10, 5))
    with pytest.raises(ParameterError, match="y_axis"):
        plots.plot_spectrogram(S, sr=100, hop_length=1, ax=ax, y_axis="cqt")
    with pytest.raises(ParameterError, match="hop_length"):
        plots.plot_spectrogram(S, sr=100, hop_length=0, ax=ax)
    with pytest.raises(ParameterError, match="2-D"):
        plots.plot_spectrogram(np.zeros(5), sr=100, hop_length=1, ax=ax)
    with pytest.raises(ParameterError, match="fmax"):
        plots.plot_mel(S, sr=100, hop_length=1, fmax=80.0, ax=ax)


def test_mfcc_colours_are_symmetric(ax):
    rng = np.random.default_rng(0)
    M = rng.normal(size=(20, 50)) * 10
    M[0] -= 300  # coefficient 0 must not set the range
    mesh = plots.plot_mfcc(M, sr=22050, hop_length=512, ax=ax)
    lo, hi = mesh.get_clim()
    assert lo == pytest.approx(-hi) and 10 < hi < 60
    assert ax.get_ylabel() == "MFCC"
    assert mesh.colorbar is not None


# ----------------------------------------------------------------------------- datasets


def test_class_counts_sorted_annotated_with_imbalance(ax):
    counts = {"b": 10, "a": 40, "c": 20}
    plots.plot_class_counts(counts, ax=ax)
    widths = [p.get_width() for p in ax.patches]
    assert widths == [10, 20, 40, 0, 0, 0]  # bottom to top: largest on top; no bad part
    assert [t.get_text() for t in ax.get_yticklabels()] == ["b", "c", "a"]
    assert {t.get_text() for t in ax.texts} == {"10", "20", "40"}
    assert "imbalance 4.0:1" in ax.get_title() and "70 clips" in ax.get_title()


def test_class_counts_show_unreadable_part(ax):
    plots.plot_class_counts({"a": 5, "b": 3}, bad={"b": 2}, ax=ax)
    red = [p for p in ax.patches if p.get_width() > 0 and p.get_x() > 0]
    assert len(red) == 1 and red[0].get_x() == 1 and red[0].get_width() == 2
    assert "3 (2 bad)" in {t.get_text() for t in ax.texts}
    assert ax.get_legend() is not None


def test_class_counts_empty_class_and_errors(ax):
    plots.plot_class_counts({"a": 3, "b": 0}, ax=ax)
    assert "inf" in ax.get_title()
    with pytest.raises(ParameterError, match="empty"):
        plots.plot_class_counts({}, ax=ax)


def test_durations_histogram_and_by_class():
    fig, (a1, a2) = plots.new_figure(ncols=2)
    d = [1.0, 1.5, 2.0, math.nan, 3.0]
    plots.plot_durations(d, ax=a1)
    assert sum(p.get_height() for p in a1.patches) == 4  # the NaN is skipped
    assert "median 1.75 s" in a1.get_title()
    plots.plot_durations(d, ax=a2, by_class=["x", "y", "x", "y", "x"])
    assert [t.get_text() for t in a2.get_yticklabels()] == ["y (1)", "x (3)"]
    with pytest.raises(ParameterError, match="labels"):
        plots.plot_durations(d, ax=a2, by_class=["x"])


def test_durations_all_unreadable(ax):
    plots.plot_durations([math.nan], ax=ax)
    assert "no readable clips" in ax.texts[0].get_text()


# ----------------------------------------------------------------------------- training


def test_history_marks_best_epoch(ax):
    history = {"train_loss": [1.0, 0.6, 0.4, 0.3], "val_loss": [1.1, 0.7, 0.8, 0.9],
               "val_accuracy": [0.5, 0.8, 0.7, 0.7], "lr": [0.1] * 4}
    plots.plot_history(history, ax=ax)
    assert ax.get_title().startswith("Best epoch 2: val_loss = 0.7")
    vlines = [ln for ln in ax.get_lines() if np.allclose(ln.get_xdata(), 2) and
              len(ln.get_xdata()) == 2]
    assert vlines, "best epoch not marked"
    twins = [a for a in ax.figure.axes if a is not ax]
    assert twins and twins[0].get_ylabel() == "Metric"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["train_loss", "val_loss", "val_accuracy"]  # lr is not a curve


def test_history_without_validation_uses_epoch_column(ax):
    nan = float("nan")
    history = {"epoch": [3, 4, 5], "train_loss": [0.9, 0.5, 0.7], "val_loss": [nan] * 3,
               "val_accuracy": [nan] * 3, "seconds": [1.0, 1.0, 1.0]}
    plots.plot_history(history, ax=ax)
    assert ax.get_title().startswith("Best epoch 4: train_loss = 0.5")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train_loss"]
    assert ax.get_xlim() == (2.5, 5.5)
    assert len(ax.figure.axes) == 1  # no empty metric axis


def test_history_monitor_metric_and_errors(ax):
    plots.plot_history({"val_macro_f1": [0.2, 0.9, 0.5]}, ax=ax)
    assert "Best epoch 2" in ax.get_title()
    with pytest.raises(ParameterError, match="monitor"):
        plots.plot_history({"val_loss": [1.0]}, ax=ax, monitor="nope")
    with pytest.raises(ParameterError, match="empty"):
        plots.plot_history({}, ax=ax)


def test_confusion_counts_and_row_normalised_colours(ax):
    cm = np.array([[8, 2, 0], [1, 1, 0], [0, 0, 0]])
    image = plots.plot_confusion(cm, classes=["a", "b", "c"], ax=ax)
    colours = image.get_array()
    np.testing.assert_allclose(colours[0], [0.8, 0.2, 0.0])
    np.testing.assert_allclose(colours[1], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(colours[2], 0.0)  # empty row: no division by zero
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "2", "8"]
    assert ax.get_xlabel() == "Predicted" and ax.get_ylabel() == "True"
    with pytest.raises(ParameterError, match="shape"):
        plots.plot_confusion(cm, classes=["a", "b"], ax=ax)
    with pytest.raises(ParameterError, match="empty"):
        plots.plot_confusion(np.zeros((0, 0)), classes=[], ax=ax)


def test_confusion_twenty_classes_readable(tmp_path):
    rng = np.random.default_rng(1)
    k = 20
    cm = rng.integers(0, 4, size=(k, k)) + np.diag(rng.integers(20, 50, size=k))
    fig, ax = plots.new_figure(figsize=(10, 9))
    plots.plot_confusion(cm, classes=[f"class_{i}" for i in range(k)], ax=ax, normalize=False)
    sizes = {t.get_fontsize() for t in ax.texts}
    assert max(sizes) <= 7 and min(sizes) >= 5
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    out = plots.save_figure(fig, tmp_path / "cm.png")
    assert Path(out).read_bytes()[:8] == PNG_MAGIC
