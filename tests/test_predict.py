"""Predictions, top-k labels, checkpoint resolution and --backend of predict/evaluate (CSVs: test_submission.py)."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import SAMPLE_CLASSES, read_csv_rows, sample_predictions
from soundclass.checkpoint.format import resolve_checkpoint
from soundclass.errors import CheckpointError, ParameterError
from soundclass.inference.predict import predict_paths
from soundclass.inference.predictions import Predictions, top_k_labels

CLASSES = SAMPLE_CLASSES






@pytest.mark.parametrize("tta", [0, -1, 2.0, True, np.int64(2), "2"])
def test_predict_paths_refuses_tta_before_loading_anything(tta):
    # numpy integers too: tta must be a plain int (checked before the checkpoint is touched)
    with pytest.raises(ParameterError, match=r"^tta=.* must be a positive integer$"):
        predict_paths("no/such/checkpoint", [], tta=tta)


def test_top_k_labels_stable_ties():
    assert top_k_labels(np.array([[0.4, 0.4, 0.2]]), classes=CLASSES, k=3) == [["aloe", "burger", "chips"]]


def test_predictions_shape_checked():
    with pytest.raises(ParameterError, match="proba.shape"):
        Predictions(("a.wav",), np.zeros((2, 3)), {}, CLASSES)
    p = sample_predictions({"/data/test/d.wav": "bad"})
    assert p.ok.tolist() == [True, True, True, False]
    assert p.predicted.tolist() == [0, 1, 2, -1]


def test_resolve_checkpoint(tmp_path):
    ck = tmp_path / "run" / "checkpoint"
    ck.mkdir(parents=True)
    (ck / "model.json").write_text("{}")
    assert resolve_checkpoint(tmp_path / "run") == ck
    assert resolve_checkpoint(ck) == ck
    assert resolve_checkpoint(ck / "model.json") == ck
    with pytest.raises(CheckpointError, match="no checkpoint"):
        resolve_checkpoint(tmp_path)


def _tiny_run(root):
    import torch

    from soundclass.checkpoint.format import save_checkpoint
    from soundclass.models import create_model, model_spec

    spec = model_spec("cnn")
    torch.manual_seed(1)
    model = create_model("cnn", n_classes=2, n_features=spec.feature.n_features, channels=(8, 8, 16, 16))
    return save_checkpoint(root / "run" / "checkpoint", model, model_name="cnn",
                           model_kwargs={"channels": [8, 8, 16, 16]}, feature=spec.feature,
                           classes=("hum", "hiss"), train_config={}, clip_frames=80)


def _labelled_wavs(root, n=3):
    import soundfile as sf

    from conftest import make_signal

    for k, label in enumerate(("hum", "hiss")):
        (root / label).mkdir(parents=True)
        for i in range(n):
            y = make_signal(16000, 0.3 + 0.35 * i, seed=10 * k + i)
            sf.write(root / label / f"{label}_{i}.wav", y, 16000, subtype="PCM_16")
    return root


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_cli_backends_agree(tmp_path, command):
    from soundclass.cli import main

    ckpt = _tiny_run(tmp_path)
    data = _labelled_wavs(tmp_path / "data")
    kinds = ("torch", "onnx")
    results = {}
    for kind in kinds:
        out = tmp_path / f"out-{kind}"
        if command == "predict":
            args = ["predict", str(ckpt.parent), str(data), "-o", str(out / "sub.csv"), "--proba"]
        else:
            args = ["evaluate", str(ckpt.parent), str(data), "-o", str(out)]
        assert main([*args, "--backend", kind, "--jobs", "1", "--quiet"]) == 0
        assert (ckpt / "onnx").is_dir() == (kind == "onnx")  # the graph is cached on first onnx use
        if command == "predict":
            rows = read_csv_rows(out / "sub.csv")
            results[kind] = (sorted(r[0] for r in rows[1:]), np.array([[float(v) for v in r[2:]] for r in rows[1:]]))
        else:
            rows = read_csv_rows(out / "predictions.csv")
            results[kind] = (sorted(r[0] for r in rows[1:]), np.array([[float(v) for v in r[3:]] for r in rows[1:]]))
    names, proba = results["torch"]
    assert len(names) == 6 and np.allclose(proba[:, -2:].sum(axis=1), 1.0, atol=1e-5)
    if "onnx" in results:
        assert results["onnx"][0] == names
        np.testing.assert_allclose(results["onnx"][1], proba, atol=2e-4)  # ONNX_ATOL + 6-decimal rounding


def test_non_finite_features_and_probabilities_are_named_failures(tmp_path, monkeypatch):
    """A file whose features or probabilities are not finite is reported, never given a label."""
    import numpy as np

    from soundclass.errors import AudioDecodeError
    from soundclass.extraction import extract
    from soundclass.inference import predict as predict_mod

    ckpt = _tiny_run(tmp_path)
    data = _labelled_wavs(tmp_path / "data", n=2)
    paths = sorted(str(p) for p in data.rglob("*.wav"))

    real = extract.compute_feature
    monkeypatch.setattr(extract, "compute_feature",  # the first file's spectrogram "overflows"
                        lambda y, config: real(y, config) * (np.inf if len(y) == 0.3 * 16000 else 1.0))
    with pytest.raises(AudioDecodeError, match="features are not finite") as info:
        extract.extract_file(next(p for p in paths if p.endswith("hum_0.wav")), ckpt_feature(ckpt))
    assert info.value.path.endswith("hum_0.wav")
    monkeypatch.setattr(extract, "compute_feature", real)

    real_cal = predict_mod.apply_checkpoint_calibration

    def nan_first(checkpoint, proba):  # the model answers NaN for the first clip of the chunk
        out = np.array(real_cal(checkpoint, proba), dtype=np.float64)
        out[0] = np.nan
        return out

    monkeypatch.setattr(predict_mod, "apply_checkpoint_calibration", nan_first)
    preds = predict_mod.predict_paths(ckpt, paths, n_jobs=1, backend="torch", progress=False)
    assert list(preds.failures) == [paths[0]] and "not finite" in preds.failures[paths[0]]
    assert not preds.ok[0] and preds.ok[1:].all()


def ckpt_feature(ckpt_dir):
    from soundclass.checkpoint.format import load_checkpoint

    return load_checkpoint(ckpt_dir).feature
