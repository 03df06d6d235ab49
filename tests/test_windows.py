"""inference.windows: long recordings through a checkpoint (predict --windows, show --timeline, serve)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import soundfile as sf

from _training_models import CLASSES, VEC, registered
from soundclass.checkpoint.format import load_checkpoint
from soundclass.errors import ParameterError
from soundclass.inference.timeline import iter_windows
from soundclass.inference.windows import (
    array_windows,
    default_window_seconds,
    parse_windows,
    predict_windows,
    score_file,
    segments_path,
)

SR = 8000
FREQS = {"a": 300.0, "b": 1200.0, "c": 2800.0}  # one tone per class of the tiny models
# the long recording: (class, seconds); boundaries at 2.0, 3.5 and 5.5 s
PIECES = [("a", 2.0), ("b", 1.5), ("c", 2.0), ("a", 1.0)]


def tone(label: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(round(seconds * SR))) / SR
    y = rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * FREQS[label] * t + rng.uniform(0, 2 * np.pi))
    return (y + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    with registered():
        yield


@pytest.fixture(scope="module")
def tone_checkpoint(tmp_path_factory):
    """The tiny vector model trained on 0.5 s tones, one frequency per class."""
    from soundclass.extraction.extract import compute_feature
    from soundclass.models import model_spec
    from soundclass.training import TrainConfig, fit

    rng = np.random.default_rng(0)
    feature = model_spec(VEC).feature
    X, y = [], []
    for k, label in enumerate(CLASSES):
        for _ in range(16):
            X.append(compute_feature(tone(label, 0.5, rng), feature))
            y.append(k)
    idx = rng.permutation(len(y))
    X, y = [X[i] for i in idx], np.asarray(y)[idx]
    out = tmp_path_factory.mktemp("tones")
    fit(X[:36], y[:36], X[36:], y[36:], classes=CLASSES, config=TrainConfig(model=VEC, epochs=8, patience=0),
        out_dir=out, progress=False)
    return out / "checkpoint"


@pytest.fixture(scope="module")
def long_file(tmp_path_factory):
    rng = np.random.default_rng(1)
    y = np.concatenate([tone(label, sec, rng) for label, sec in PIECES])
    path = tmp_path_factory.mktemp("long") / "kitchen.wav"
    sf.write(path, y, SR, subtype="PCM_16")
    return path


def _check_segments(rows, *, tol: float):
    """``rows`` of (start, end, label): the concatenated pieces, boundaries within ``tol`` seconds."""
    assert [r[2] for r in rows] == [label for label, _ in PIECES]
    bounds = np.cumsum([sec for _, sec in PIECES])
    np.testing.assert_allclose([r[1] for r in rows[:-1]], bounds[:-1], atol=tol)
    assert rows[0][0] == 0.0 and rows[-1][1] == pytest.approx(bounds[-1], abs=1e-3)


def test_parse_windows():
    assert parse_windows("2") == (2.0, None)
    assert parse_windows("1.5:0.5") == (1.5, 0.5)
    assert parse_windows("auto:0.25") == (None, 0.25)
    for bad in ("", "x", "1:2:3", "0", "-1", "1:0", "nan"):
        with pytest.raises(ParameterError, match="windows"):
            parse_windows(bad)


def test_array_windows_cut_what_iter_windows_streams(long_file):
    y, _ = sf.read(long_file, dtype="float32")
    for window, hop in ((0.5, None), (0.7, 0.3), (10.0, None)):
        streamed = list(iter_windows(long_file, sr=SR, window_seconds=window, hop_seconds=hop))
        cut = list(array_windows(y, sr=SR, window_seconds=window, hop_seconds=hop))
        assert [(w.start, w.end) for w in cut] == [(w.start, w.end) for w in streamed]
        for a, b in zip(cut, streamed, strict=True):
            np.testing.assert_array_equal(a.y, b.y)


def test_segments_find_the_concatenated_classes(tone_checkpoint, long_file):
    ckpt = load_checkpoint(tone_checkpoint)
    assert default_window_seconds(ckpt) == 1.0  # a vector model has no training window
    tl = score_file(ckpt, long_file, window_seconds=0.5, hop_seconds=0.25)
    assert len(tl.starts) == 25 and tl.proba.shape == (25, 3)
    np.testing.assert_allclose(tl.proba.sum(axis=1), 1.0, atol=1e-5)
    _check_segments([(s.start, s.end, s.label) for s in tl.segments()], tol=0.25)


def test_predict_windows_streams_and_skips_bad_files(tone_checkpoint, long_file, tmp_path, monkeypatch):
    import soundclass.audio as audio_module

    def no_whole_file_load(*args, **kwargs):
        raise AssertionError("predict --windows must stream, not load whole files")

    monkeypatch.setattr(audio_module, "load", no_whole_file_load)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt not audio")
    out = tmp_path / "timeline.csv"
    res = predict_windows(tone_checkpoint, [long_file, bad], window_seconds=0.5, out_csv=out)
    assert list(res.failures) == [str(bad)] and res.failures[str(bad)]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert list(rows[0]) == ["name", "start", "end", "label", "p"]
    assert len(rows) == res.n_windows == 13 and {r["name"] for r in rows} == {"kitchen.wav"}
    assert [float(r["start"]) for r in rows] == pytest.approx([0.5 * k for k in range(13)])
    assert all(0 <= float(r["p"]) <= 1 for r in rows)
    seg_rows = list(csv.DictReader(segments_path(out).open(encoding="utf-8")))
    assert segments_path(out).name == "timeline.segments.csv"
    _check_segments([(float(r["start"]), float(r["end"]), r["label"]) for r in seg_rows], tol=0.5)


def test_cli_predict_windows(tone_checkpoint, long_file, tmp_path, capsys):
    from soundclass.cli import main

    out = tmp_path / "sub.csv"
    code = main(["predict", str(tone_checkpoint.parent), str(long_file), "-o", str(out), "--windows", "1:0.5",
                 "--quiet"])
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    # 1 s windows every 0.5 s over 6.5 s: starts 0..5.5, then the 0.5 s tail from 6.0 is too short
    assert [float(r["start"]) for r in rows] == pytest.approx([0.5 * k for k in range(12)])
    assert all(float(r["end"]) - float(r["start"]) == pytest.approx(1.0) for r in rows)
    assert {r["label"] for r in rows} == set(CLASSES)
    assert (tmp_path / "sub.segments.csv").is_file()
    assert "segment" in capsys.readouterr().out


def test_cli_show_timeline(tone_checkpoint, long_file, tmp_path):
    from soundclass.cli import main

    png = tmp_path / "tl.png"
    assert main(["show", "--timeline", str(tone_checkpoint), str(long_file), "-o", str(png),
                 "--windows", "0.5"]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_serve_answers_a_timeline_for_a_long_upload(tone_checkpoint, long_file):
    import warnings

    from soundclass.apps.serve import App, CheckpointPredictor, create_asgi_app

    with warnings.catch_warnings():  # starlette's note about httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    predictor = CheckpointPredictor(load_checkpoint(tone_checkpoint))
    app = App(predictor, window_seconds=0.5)
    with TestClient(create_asgi_app(app), base_url="http://127.0.0.1:8000") as client:
        out = client.post("/api/predict", content=long_file.read_bytes(),
                          headers={"Content-Type": "audio/wav"}).json()
        tl = out["timeline"]
        assert tl["window_seconds"] == 0.5 and tl["hop_seconds"] == 0.25 and tl["classes"] == list(CLASSES)
        assert len(tl["starts"]) == len(tl["ends"]) == len(tl["proba"]) == 25
        _check_segments([(s["start"], s["end"], s["label"]) for s in tl["segments"]], tol=0.25)
        buf = io.BytesIO()  # a clip of one window has no timeline
        sf.write(buf, tone("b", 0.4, np.random.default_rng(2)), SR, format="WAV", subtype="PCM_16")
        out = client.post("/api/predict", content=buf.getvalue(), headers={"Content-Type": "audio/wav"}).json()
        assert out["timeline"] is None and out["top"][0]["label"] == "b"
