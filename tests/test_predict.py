"""Predictions, top-k labels and checkpoint resolution (submission CSVs: test_submission.py)."""

from __future__ import annotations

import numpy as np
import pytest

from soundclass.errors import CheckpointError, ParameterError
from soundclass.inference.predict import Predictions, resolve_checkpoint, top_k_labels

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
