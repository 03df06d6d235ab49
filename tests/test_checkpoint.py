"""Checkpoints: safetensors + JSON round trips, clear errors, no pickle.

(The resumable training state: tests/test_training_state.py.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from soundclass.checkpoint.format import (
    META_NAME,
    WEIGHTS_NAME,
    load_checkpoint,
    save_checkpoint,
)
from soundclass.errors import CheckpointError
from soundclass.inference.predictor import predict_logits, predict_proba
from soundclass.models import create_model, model_spec

CLASSES = ("crunch", "slurp", "sip")


def _seq_features(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((60, int(t))).astype(np.float32) for t in rng.integers(10, 50, n)]


@pytest.fixture
def lstm_ckpt(tmp_path):
    torch.manual_seed(0)
    spec = model_spec("seed-lstm")
    model = create_model("seed-lstm", n_classes=len(CLASSES), n_features=spec.feature.n_features)
    mean = np.linspace(-1, 1, 60).astype(np.float32)
    std = np.linspace(0.5, 2, 60).astype(np.float32)
    out = save_checkpoint(
        tmp_path / "ckpt", model, model_name="seed-lstm", model_kwargs={}, feature=spec.feature,
        classes=CLASSES, train_config={"lr": 1e-3, "epochs": 2}, norm_mean=mean, norm_std=std,
        clip_frames=24, metrics={"macro_f1": 0.5},
    )
    return model, out, mean, std


def test_round_trip_identical_predictions(lstm_ckpt):
    model, out, mean, std = lstm_ckpt
    assert (out / WEIGHTS_NAME).is_file() and (out / META_NAME).is_file()
    feats = _seq_features()
    ref = predict_logits(model, feats, input_kind="sequence", clip_frames=24, norm_mean=mean, norm_std=std)
    for where in (out, out / META_NAME, out / WEIGHTS_NAME):
        ck = load_checkpoint(where)
        assert ck.classes == CLASSES and ck.input == "sequence" and ck.clip_frames == 24
        assert ck.feature == model_spec("seed-lstm").feature
        assert ck.train_config == {"lr": 1e-3, "epochs": 2}
        assert ck.metrics == {"macro_f1": 0.5}
        assert not ck.model.training
        np.testing.assert_array_equal(ck.norm_mean, mean)
        np.testing.assert_array_equal(ck.norm_std, std)
        got = predict_logits(ck.model, feats, input_kind=ck.input, clip_frames=ck.clip_frames,
                             norm_mean=ck.norm_mean, norm_std=ck.norm_std)
        np.testing.assert_array_equal(got, ref)
        proba = predict_proba(ck, feats)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
        assert np.array_equal(proba.argmax(1), ref.argmax(1))


def test_json_is_plain_and_complete(lstm_ckpt):
    _, out, _, _ = lstm_ckpt
    meta = json.loads((out / META_NAME).read_text())
    for key in ("format_version", "soundclass_version", "model_name", "model_kwargs", "input",
                "feature", "classes", "train_config", "clip_frames", "metrics", "created"):
        assert key in meta
    assert meta["feature"]["n_mfcc"] == 20


def test_vector_model_without_norm(tmp_path):
    spec = model_spec("seed-cnn")
    model = create_model("seed-cnn", n_classes=2, n_features=128)
    save_checkpoint(tmp_path, model, model_name="seed-cnn", model_kwargs={"dropout": 0.2},
                    feature=spec.feature, classes=["a", "b"], train_config={})
    ck = load_checkpoint(tmp_path)
    assert ck.input == "vector" and ck.norm_mean is None and ck.clip_frames is None
    assert ck.model_kwargs == {"dropout": 0.2}
    x = np.random.default_rng(0).random((3, 128)).astype(np.float32)
    model.eval()
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(predict_logits(ck.model, x, input_kind="vector", clip_frames=None), ref, rtol=1e-6)


def test_missing_and_corrupt_files(lstm_ckpt, tmp_path):
    _, out, _, _ = lstm_ckpt
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "nowhere")
    (out / WEIGHTS_NAME).write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=WEIGHTS_NAME):
        load_checkpoint(out)
    (out / META_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match=f"{META_NAME}.*not valid JSON"):
        load_checkpoint(out)


def test_truncated_weights(lstm_ckpt):
    _, out, _, _ = lstm_ckpt
    data = (out / WEIGHTS_NAME).read_bytes()
    (out / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(out)


def test_unknown_model_and_shape_mismatch(lstm_ckpt):
    _, out, _, _ = lstm_ckpt
    meta = json.loads((out / META_NAME).read_text())
    bad = dict(meta, model_name="no-such-model")
    (out / META_NAME).write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="unknown model 'no-such-model'"):
        load_checkpoint(out)
    bad = dict(meta, classes=["a", "b", "c", "d"])  # 4 logits, weights have 3
    (out / META_NAME).write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(out)
    bad = dict(meta, format_version=99)
    (out / META_NAME).write_text(json.dumps(bad))
    with pytest.raises(CheckpointError, match="format_version"):
        load_checkpoint(out)
