"""Calibrated probabilities and "unknown" answers: train -> checkpoint -> predict/export/serve.

The real path: a tiny registered test model trained on the generated demo
dataset with a validation split; held-out clips come from other seeds.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from _training_models import E2E, registered
from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.errors import CheckpointError, ParameterError
from soundclass.evaluation.metrics import log_loss
from soundclass.inference.calibration import (
    UNKNOWN,
    calibrate_proba,
    calibration_of,
    unknown_mask,
    unknown_threshold,
    with_unknown,
)
from soundclass.inference.predict import predict_paths
from soundclass.training import TrainConfig, train
from soundclass.training.calibrate import calibration_from_validation

SR = 8000


@pytest.fixture(scope="module", autouse=True)
def _tiny_models():
    with registered():
        yield


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained long enough to be over-confident, with an 'unknown' threshold."""
    from soundclass.data import synth

    root = tmp_path_factory.mktemp("cal")
    data = synth.make_demo_dataset(root / "data", n_per_class=16, sr=SR, n_sources=8, seed=0)
    held = synth.make_demo_dataset(root / "held", n_per_class=10, sr=SR, n_sources=5, seed=7)
    cfg = TrainConfig(model=E2E, n_jobs=1, epochs=12, lr=2e-2, val_size=0.3, unknown_precision=0.95,
                      group_pattern=synth.DEMO_GROUP_PATTERN, seed=0)
    res = train(data, cfg, out_dir=root / "run", progress=False)
    noise_dir = root / "noise"
    noise_dir.mkdir()
    rng = np.random.default_rng(3)
    t = np.arange(SR) / SR
    # out of distribution: brown noise, steady tones and chirps, unlike every demo class
    # (white noise is left out: it sounds like 'fizz', which is filtered noise)
    for i in range(24):
        kind = i % 3
        if kind == 0:
            x = np.cumsum(rng.standard_normal(SR))
        elif kind == 1:
            x = np.sin(2 * np.pi * rng.uniform(100, 3000) * t)
        else:
            x = np.sin(2 * np.pi * (rng.uniform(100, 500) + rng.uniform(500, 3000) * t) * t)
        x = x - x.mean()
        x = (rng.uniform(0.05, 0.9) * x / np.max(np.abs(x))).astype(np.float32)
        sf.write(noise_dir / f"noise_{i:02d}.wav", x, SR, subtype="PCM_16")
    return res, held, noise_dir, root


def test_train_stores_calibration_and_it_lowers_held_out_log_loss(trained):
    res, held, _, _ = trained
    ck = load_checkpoint(res.checkpoint_dir)
    cal = calibration_of(ck)
    assert res.calibration is not None and cal["temperature"] == pytest.approx(res.calibration["temperature"])
    assert cal["temperature"] != 1.0
    assert 0 <= cal["unknown_threshold"] <= 1 and cal["target_precision"] == 0.95
    assert cal["ece_calibrated"] <= cal["ece"] + 1e-9 and cal["log_loss_calibrated"] <= cal["log_loss"] + 1e-9
    preds = predict_paths(ck, held.paths, n_jobs=1, progress=False)  # calibrated
    raw = calibrate_proba(preds.proba, temperature=1.0 / cal["temperature"])  # the model's own softmax
    y = np.asarray(held.targets)
    assert np.array_equal(preds.proba.argmax(1), raw.argmax(1))  # calibration changes no decision
    assert log_loss(preds.proba, y) < log_loss(raw, y)


def test_noise_is_rejected_more_often_than_in_distribution_clips(trained):
    res, held, noise_dir, _ = trained
    ck = load_checkpoint(res.checkpoint_dir)
    thr = unknown_threshold(ck)
    assert thr == calibration_of(ck)["unknown_threshold"] and 0 < thr < 1
    noise = sorted(str(p) for p in noise_dir.iterdir())
    p_in = predict_paths(ck, held.paths, n_jobs=1, progress=False).proba
    p_out = predict_paths(ck, noise, n_jobs=1, progress=False).proba
    rate_in = unknown_mask(p_in, threshold=thr).mean()
    rate_out = unknown_mask(p_out, threshold=thr).mean()
    assert rate_out > rate_in, (rate_in, rate_out, thr)


def test_report_shows_calibration(trained):
    from soundclass.evaluation.evaluate import evaluate_training

    res, _, _, root = trained
    ev = evaluate_training(res, out_dir=root / "eval")
    m = ev.metrics["calibration"]
    assert m["temperature"] == pytest.approx(res.calibration["temperature"])
    assert m["ece"] == pytest.approx(res.calibration["ece_calibrated"])
    assert m["ece_uncalibrated"] == pytest.approx(res.calibration["ece"])
    html = ev.files["report"].read_text(encoding="utf-8")
    assert "<h2>Calibration</h2>" in html and "expected calibration error, calibrated" in html
    assert ev.files["reliability"].is_file()


def test_predict_cli_unknown_below_writes_unknown(trained, tmp_path, capsys):
    from soundclass.cli import main

    res, held, _, _ = trained
    out = tmp_path / "sub.csv"
    assert main(["predict", str(res.checkpoint_dir), *held.paths[:6], "-o", str(out), "--unknown-below", "1",
                 "--jobs", "1", "--quiet"]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert [r["label"] for r in rows] == [UNKNOWN] * 6
    assert "unknown: 6 of 6" in capsys.readouterr().out
    assert main(["predict", str(res.checkpoint_dir), *held.paths[:6], "-o", str(out), "--unknown-below", "0",
                 "--jobs", "1", "--quiet"]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert UNKNOWN not in {r["label"] for r in rows}
    assert main(["predict", str(res.checkpoint_dir), *held.paths[:6], "-o", str(out), "--unknown-precision", "0.95",
                 "--jobs", "1", "--quiet", "--top-k", "2"]) == 0
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    p = predict_paths(load_checkpoint(res.checkpoint_dir), held.paths[:6], n_jobs=1, progress=False).proba
    expect = unknown_mask(p, threshold=calibration_of(load_checkpoint(res.checkpoint_dir))["unknown_threshold"])
    assert [r["label"] == UNKNOWN for r in rows] == expect.tolist()
    assert UNKNOWN not in {r["label_2"] for r in rows}  # the next guess is still a class


def test_onnx_metadata_and_serve_carry_the_threshold(trained, tmp_path):
    from soundclass.apps.serve.predictor import CheckpointPredictor
    from soundclass.inference.export import export_onnx, read_metadata

    res, _, _, _ = trained
    ck = load_checkpoint(res.checkpoint_dir)
    cal = calibration_of(ck)
    meta = read_metadata(export_onnx(res.checkpoint_dir, tmp_path / "m.onnx", check=False))
    assert float(meta["temperature"]) == pytest.approx(cal["temperature"])
    assert float(meta["unknown_threshold"]) == pytest.approx(cal["unknown_threshold"])
    assert CheckpointPredictor(ck).unknown_threshold == pytest.approx(cal["unknown_threshold"])


def test_checkpoint_round_trip_and_old_checkpoints(tmp_path):
    import torch

    from soundclass.config import FeatureConfig

    model = torch.nn.Sequential(torch.nn.Linear(8, 3))
    feature = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=8, pooling="mean")
    kw = dict(model_name="test-tiny-vector", model_kwargs={"hidden": 16}, feature=feature, classes=["a", "b", "c"],
              train_config={})
    from _training_models import TinyMLP

    model = TinyMLP(n_classes=3, n_features=8)
    cal = {"temperature": 1.7, "unknown_threshold": 0.62, "target_precision": 0.95, "ece": 0.1,
           "ece_calibrated": 0.03, "precision_thresholds": {"0.9": 0.5, "0.95": 0.62}}
    save_checkpoint(tmp_path / "c", model, calibration=cal, **kw)
    got = calibration_of(load_checkpoint(tmp_path / "c"))
    assert got["temperature"] == 1.7 and got["unknown_threshold"] == 0.62
    assert got["precision_thresholds"] == {"0.90": 0.5, "0.95": 0.62}
    ck = load_checkpoint(tmp_path / "c")
    assert unknown_threshold(ck, precision=0.95) == 0.62
    assert unknown_threshold(ck, precision=0.85) == 0.5  # the nearest stored precision above
    with pytest.raises(ParameterError, match="no threshold stored for precision 0.99"):
        unknown_threshold(ck, precision=0.99)
    save_checkpoint(tmp_path / "old", model, **kw)  # no calibration: T = 1, no unknown answers
    old = load_checkpoint(tmp_path / "old")
    assert calibration_of(old)["temperature"] == 1.0 and unknown_threshold(old) is None
    meta_path = tmp_path / "c" / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["calibration"]["temperature"] = -1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="model.json: calibration temperature=-1"):
        load_checkpoint(tmp_path / "c")


def test_calibration_lowers_log_loss_of_a_synthetic_overconfident_model():
    """A synthetic logit model (not the train path): true logits scaled by 4 are over-confident."""
    rng = np.random.default_rng(0)
    n, k = 4000, 5
    z_true = rng.standard_normal((n, k)) * 1.5
    p_true = np.exp(z_true) / np.exp(z_true).sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p_true])
    z = 4.0 * z_true
    proba = np.exp(z - z.max(1, keepdims=True))
    proba /= proba.sum(1, keepdims=True)
    cal = calibration_from_validation(proba[:2000], y[:2000], target_precision=0.8)
    assert 3.0 < cal["temperature"] < 5.0
    held = calibrate_proba(proba[2000:], temperature=cal["temperature"])
    assert log_loss(held, y[2000:]) < log_loss(proba[2000:], y[2000:]) - 0.1
    accepted = ~unknown_mask(held, threshold=cal["unknown_threshold"])
    assert (held[accepted].argmax(1) == y[2000:][accepted]).mean() > 0.75


def test_with_unknown_and_calibrate_proba_properties():
    from soundclass.inference.predictions import Predictions

    p = np.array([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25], [np.nan] * 3])
    preds = Predictions(("a.wav", "b.wav", "c.wav"), p, {"c.wav": "bad"}, ("x", "y", "z"))
    out = with_unknown(preds, threshold=0.5)
    assert out.classes[-1] == UNKNOWN and out.predicted.tolist() == [0, 3, -1]
    assert with_unknown(preds, threshold=None) is preds
    q = calibrate_proba(p[:2], temperature=2.0)
    assert np.allclose(q.sum(1), 1) and np.array_equal(q.argmax(1), p[:2].argmax(1))
    assert q.max() < p[:2].max()  # softer
    assert np.allclose(calibrate_proba(q, temperature=0.5), p[:2], atol=1e-6)
    with pytest.raises(ParameterError):
        calibrate_proba(p, temperature=0)
    with pytest.raises(ParameterError, match="not both"):
        unknown_threshold(None, below=0.5, precision=0.9)


def test_too_few_or_perfectly_separated_validation_clips_keep_t_one():
    y = np.arange(40) % 2
    sure = np.where(y[:, None] == np.arange(2)[None, :], 0.8, 0.2)  # every clip right: NLL wants T -> 0
    cal = calibration_from_validation(sure, y)
    assert cal["temperature"] == 1.0 and "search bound" in cal["note"]
    cal = calibration_from_validation(sure[:10], y[:10])
    assert cal["temperature"] == 1.0 and "10 validation clips" in cal["note"]
