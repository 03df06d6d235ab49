"""Evaluation files from known probabilities (no model needed)."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from soundclass.data.dataset import Item
from soundclass.errors import DatasetError, ParameterError
from soundclass.evaluation.evaluate import (
    evaluate_run,
    evaluate_training,
    load_history,
    misclassified_rows,
)

CLASSES = ["crunchy", "soft", "soup"]


def _case(n=30, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 1.5  # mostly right, some wrong
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    paths = [f"/data/{CLASSES[t]}/clip_{i:02d}.wav" for i, t in enumerate(y)]
    return paths, [CLASSES[t] for t in y], proba, y


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_run_files_are_consistent(tmp_path):
    paths, labels, proba, y = _case()
    history = {"train_loss": [1.0, 0.8, 0.6], "val_loss": [1.1, 0.9, 0.95], "val_accuracy": [0.4, 0.6, 0.55]}
    ev = evaluate_run(paths, labels, proba, classes=CLASSES, out_dir=tmp_path, history=history,
                      failures={"/data/soup/bad.wav": "truncated file"}, warnings=["leak"],
                      extra={"tta": 1})
    for name in ("metrics.json", "predictions.csv", "misclassified.csv", "confusion.png",
                 "history.png", "report.html"):
        assert (tmp_path / name).is_file(), name
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(ev.metrics))
    pred = np.argmax(proba, axis=1)
    assert metrics["accuracy"] == pytest.approx(np.mean(pred == y))
    assert metrics["n"] == 30 and metrics["n_failed"] == 1 and metrics["tta"] == 1
    assert metrics["failures"] == {"/data/soup/bad.wav": "truncated file"}
    assert metrics["warnings"] == ["leak"]
    assert 0 < metrics["log_loss"] < 5

    rows = _read(tmp_path / "predictions.csv")
    assert [r["path"] for r in rows] == paths
    assert [r["predicted"] for r in rows] == [CLASSES[p] for p in pred]
    acc_from_csv = np.mean([r["true"] == r["predicted"] for r in rows])
    assert acc_from_csv == pytest.approx(metrics["accuracy"])
    assert float(rows[0]["proba_soft"]) == pytest.approx(proba[0, 1], abs=1e-6)

    wrong = _read(tmp_path / "misclassified.csv")
    assert len(wrong) == int(np.sum(pred != y)) > 0
    conf = [float(r["confidence"]) for r in wrong]
    assert conf == sorted(conf, reverse=True)
    assert all(r["true"] != r["predicted"] for r in wrong)
    assert all(r["top3"].split()[0].startswith(r["predicted"] + ":") for r in wrong)

    report = (tmp_path / "report.html").read_text()
    assert "truncated file" in report and "leak" in report


def test_misclassified_rows_top3():
    proba = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])
    rows = misclassified_rows(["a.wav", "b.wav"], np.array([0, 0]), proba, classes=CLASSES)
    assert rows == [{"path": "a.wav", "true": "crunchy", "predicted": "soft", "confidence": 0.7,
                     "top3": "soft:0.70 soup:0.20 crunchy:0.10"}]


def test_evaluate_run_rejects_bad_input(tmp_path):
    paths, labels, proba, _ = _case(n=4)
    with pytest.raises(DatasetError, match="pizza"):
        evaluate_run(paths, [*labels[:3], "pizza"], proba, classes=CLASSES, out_dir=tmp_path)
    with pytest.raises(ParameterError, match="proba.shape"):
        evaluate_run(paths, labels, proba[:3], classes=CLASSES, out_dir=tmp_path)


def test_evaluate_training_uses_stored_validation(tmp_path):
    paths, labels, proba, y = _case(n=12, seed=3)
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.mkdir(parents=True)
    result = SimpleNamespace(
        checkpoint_dir=ckpt, history={"train_loss": [1.0, 0.5], "val_loss": [1.2, 0.7]},
        best_epoch=2, classes=tuple(CLASSES),
        val_items=tuple(Item(p, lab) for p, lab in zip(paths, labels, strict=True)),
        val_proba=proba, failures={"/x/broken.wav": "empty file"}, warnings=("group leakage: g1",),
    )
    ev = evaluate_training(result, config={"model": "cnn"})
    assert ev.out_dir == tmp_path / "run"
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["split"] == "validation" and metrics["best_epoch"] == 2
    assert metrics["accuracy"] == pytest.approx(np.mean(np.argmax(proba, 1) == y))
    assert (tmp_path / "run" / "history.png").is_file()
    assert "group leakage: g1" in (tmp_path / "run" / "report.html").read_text()


def test_load_history(tmp_path):
    assert load_history(tmp_path) is None
    (tmp_path / "history.json").write_text('{"train_loss": [1.0]}')
    assert load_history(tmp_path) == {"train_loss": [1.0]}
    (tmp_path / "history.json").write_text("{not json")
    assert load_history(tmp_path) is None


def test_history_columns_from_per_epoch_rows():
    from soundclass.evaluation.evaluate import history_columns

    rows = [{"epoch": 0, "train_loss": 1.0, "val_loss": 2.0, "note": "x"},
            {"epoch": 1, "train_loss": 0.5, "val_loss": 1.5, "note": "y"}]
    assert history_columns(rows) == {"epoch": [0.0, 1.0], "train_loss": [1.0, 0.5], "val_loss": [2.0, 1.5]}
    assert history_columns({"a": (1, 2)}) == {"a": [1, 2]}
