"""Submission CSVs (exact format, failed files, top-k and probability columns); --backend of predict/evaluate."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from soundclass.errors import CheckpointError, ParameterError, SoundclassError
from soundclass.inference.predict import (
    Predictions,
    failed_list_path,
    resolve_checkpoint,
    top_k_labels,
    write_submission,
)

CLASSES = ("aloe", "burger", "chips")


def _preds(failures=None):
    paths = ("/data/test/b_2.wav", "/data/test/a_1.wav", "/data/test/sous-dossier/c_ü.wav", "/data/test/d.wav")
    proba = np.array([
        [0.7, 0.2, 0.1],
        [0.1, 0.6, 0.3],
        [0.2, 0.3, 0.5],
        [0.1, 0.8, 0.1],
    ])
    failures = dict(failures or {})
    for p in failures:
        proba[paths.index(p)] = np.nan
    return Predictions(paths, proba, failures, CLASSES)


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_submission_exact_format(tmp_path):
    out = write_submission(_preds(), tmp_path / "submit.csv")
    text = out.read_bytes().decode("utf-8")
    assert text == "name,label\nb_2.wav,aloe\na_1.wav,burger\nc_ü.wav,chips\nd.wav,burger\n"
    assert not failed_list_path(out).exists()


def test_failed_file_gets_most_frequent_class_and_is_listed(tmp_path, capsys):
    bad = "/data/test/sous-dossier/c_ü.wav"
    out = write_submission(_preds({bad: "not a RIFF file"}), tmp_path / "submit.csv")
    rows = _read(out)
    assert [r[0] for r in rows[1:]] == ["b_2.wav", "a_1.wav", "c_ü.wav", "d.wav"]
    # burger is predicted twice among the three good files
    assert rows[3] == ["c_ü.wav", "burger"]
    listing = failed_list_path(out).read_text(encoding="utf-8")
    assert listing == f"{bad}\tnot a RIFF file\n"
    err = capsys.readouterr().err
    assert "1 file(s) could not be decoded" in err and bad in err


def test_failed_skip_and_error(tmp_path):
    bad = "/data/test/a_1.wav"
    out = write_submission(_preds({bad: "empty"}), tmp_path / "s.csv", failed="skip")
    assert [r[0] for r in _read(out)] == ["name", "b_2.wav", "c_ü.wav", "d.wav"]
    assert failed_list_path(out).is_file()
    with pytest.raises(SoundclassError, match="a_1.wav: empty"):
        write_submission(_preds({bad: "empty"}), tmp_path / "e.csv", failed="error")
    with pytest.raises(ParameterError, match="failed="):
        write_submission(_preds(), tmp_path / "x.csv", failed="ignore")


def test_stale_failed_list_removed(tmp_path):
    out = tmp_path / "s.csv"
    write_submission(_preds({"/data/test/d.wav": "bad"}), out)
    assert failed_list_path(out).exists()
    write_submission(_preds(), out)
    assert not failed_list_path(out).exists()


def test_all_failed_needs_prior(tmp_path):
    p = _preds()
    allbad = Predictions(p.paths, np.full_like(p.proba, np.nan), {q: "bad" for q in p.paths}, CLASSES)
    with pytest.raises(SoundclassError, match="no file could be predicted"):
        write_submission(allbad, tmp_path / "s.csv")
    out = write_submission(allbad, tmp_path / "s.csv", prior=np.array([1.0, 2.0, 5.0]), with_proba=True)
    rows = _read(out)
    assert {r[1] for r in rows[1:]} == {"chips"}
    assert rows[1][2:] == ["0.125000", "0.250000", "0.625000"]


def test_top_k_and_proba_columns(tmp_path):
    out = write_submission(_preds(), tmp_path / "s.csv", top_k=2, with_proba=True)
    rows = _read(out)
    assert rows[0] == ["name", "label", "label_2", "proba_aloe", "proba_burger", "proba_chips"]
    assert rows[1][:3] == ["b_2.wav", "aloe", "burger"]
    assert rows[3][:3] == ["c_ü.wav", "chips", "burger"]
    for r in rows[1:]:
        assert sum(float(v) for v in r[3:]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ParameterError, match="top_k=4"):
        write_submission(_preds(), tmp_path / "s.csv", top_k=4)


def test_duplicate_names_warn(tmp_path):
    p = Predictions(("/a/x.wav", "/b/x.wav"), np.array([[1.0, 0, 0], [0, 1.0, 0]]), {}, CLASSES)
    with pytest.warns(UserWarning, match="x.wav"):
        write_submission(p, tmp_path / "s.csv")


def test_top_k_labels_stable_ties():
    assert top_k_labels(np.array([[0.4, 0.4, 0.2]]), classes=CLASSES, k=3) == [["aloe", "burger", "chips"]]


def test_predictions_shape_checked():
    with pytest.raises(ParameterError, match="proba.shape"):
        Predictions(("a.wav",), np.zeros((2, 3)), {}, CLASSES)
    p = _preds({"/data/test/d.wav": "bad"})
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

    from soundclass.inference.checkpoint import save_checkpoint
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
    from soundclass.inference.backends import onnx_available

    ckpt = _tiny_run(tmp_path)
    data = _labelled_wavs(tmp_path / "data")
    kinds = ("torch", "onnx") if onnx_available() else ("torch",)
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
            rows = _read(out / "sub.csv")
            results[kind] = (sorted(r[0] for r in rows[1:]), np.array([[float(v) for v in r[2:]] for r in rows[1:]]))
        else:
            rows = _read(out / "predictions.csv")
            results[kind] = (sorted(r[0] for r in rows[1:]), np.array([[float(v) for v in r[3:]] for r in rows[1:]]))
    names, proba = results["torch"]
    assert len(names) == 6 and np.allclose(proba[:, -2:].sum(axis=1), 1.0, atol=1e-5)
    if "onnx" in results:
        assert results["onnx"][0] == names
        np.testing.assert_allclose(results["onnx"][1], proba, atol=2e-4)  # ONNX_ATOL + 6-decimal rounding
