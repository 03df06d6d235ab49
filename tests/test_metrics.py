"""Metrics against scikit-learn on random data, including absent classes."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from soundclass.errors import ParameterError
from soundclass.evaluation.metrics import (
    confusion_matrix,
    evaluate_predictions,
    format_report,
    log_loss,
)


def _random_case(seed: int, n: int = 200, n_classes: int = 7, missing_true=(), missing_pred=()):
    rng = np.random.default_rng(seed)
    allowed_t = [c for c in range(n_classes) if c not in missing_true]
    allowed_p = [c for c in range(n_classes) if c not in missing_pred]
    y_true = rng.choice(allowed_t, size=n)
    # Mostly right, sometimes wrong, so that every metric is non-trivial.
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(allowed_p, size=n))
    y_pred = np.where(np.isin(y_pred, list(missing_pred)), rng.choice(allowed_p, size=n), y_pred)
    logits = rng.normal(size=(n, n_classes)) + 2.0 * np.eye(n_classes)[y_pred]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, y_pred, proba


CASES = [
    dict(seed=0),
    dict(seed=1, missing_true=(2,)),  # class predicted but absent from y_true
    dict(seed=2, missing_pred=(0, 5)),  # classes never predicted
    dict(seed=3, missing_true=(4,), missing_pred=(4, 1)),  # class absent from both
    dict(seed=4, n=9, n_classes=3),
]


@pytest.mark.parametrize("case", CASES)
def test_matches_sklearn(case):
    n_classes = case.get("n_classes", 7)
    y_true, y_pred, proba = _random_case(**case)
    classes = [f"c{i}" for i in range(n_classes)]
    labels = list(range(n_classes))
    m = evaluate_predictions(y_true, y_pred, classes=classes, proba=proba)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    kw = dict(zero_division=0)
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro", **kw))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="weighted", **kw))
    assert m["macro_precision"] == pytest.approx(
        skm.precision_score(y_true, y_pred, average="macro", **kw)
    )
    assert m["macro_recall"] == pytest.approx(skm.recall_score(y_true, y_pred, average="macro", **kw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about classes only in y_pred
        bal = skm.balanced_accuracy_score(y_true, y_pred)
    assert m["balanced_accuracy"] == pytest.approx(bal)

    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, **kw)
    for i, name in enumerate(classes):
        pc = m["per_class"][name]
        assert pc["precision"] == pytest.approx(p[i])
        assert pc["recall"] == pytest.approx(r[i])
        assert pc["f1"] == pytest.approx(f[i])
        assert pc["support"] == s[i]

    np.testing.assert_array_equal(
        np.array(m["confusion_matrix"]), skm.confusion_matrix(y_true, y_pred, labels=labels)
    )
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_true, proba, labels=labels), rel=1e-9)
    for k in (3, 5):
        key = f"top{k}_accuracy"
        if k < n_classes:
            assert m[key] == pytest.approx(skm.top_k_accuracy_score(y_true, proba, k=k, labels=labels))
        else:
            assert key not in m


def test_confusion_matrix_small_known_values():
    C = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], n_classes=4)
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(C, expected)
    assert C.dtype == np.int64


def test_zero_division_is_zero():
    # class 1 never predicted and never true; class 2 predicted but never true
    m = evaluate_predictions([0, 0, 0], [0, 0, 2], classes=["a", "b", "c"])
    assert m["per_class"]["b"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["per_class"]["c"]["precision"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)  # only class 'a' has support
    assert m["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)  # 'b' is absent from both, not averaged


def test_perfect_predictions():
    y = [0, 1, 2, 1]
    m = evaluate_predictions(y, y, classes=["a", "b", "c"])
    assert m["accuracy"] == m["macro_f1"] == m["balanced_accuracy"] == 1.0


@pytest.mark.parametrize(
    "y_true, y_pred, match",
    [
        ([0, 1], [0], "2 items"),
        ([0, 3], [0, 1], "outside"),
        ([0, -1], [0, 1], "outside"),
        ([0.5, 1], [0, 1], "integer"),
        ([], [], "empty"),
    ],
)
def test_bad_input(y_true, y_pred, match):
    with pytest.raises(ParameterError, match=match):
        evaluate_predictions(y_true, y_pred, classes=["a", "b", "c"])


def test_bad_proba():
    with pytest.raises(ParameterError, match="shape"):
        evaluate_predictions([0, 1], [0, 1], classes=["a", "b"], proba=np.ones((2, 3)) / 3)
    with pytest.raises(ParameterError, match="sum to 1"):
        evaluate_predictions([0, 1], [0, 1], classes=["a", "b"], proba=np.ones((2, 2)))


def test_format_report_lists_every_class():
    y_true, y_pred, proba = _random_case(5, n_classes=6)
    classes = ["crunch", "slurp", "fizz", "chew", "a_longer_class_name", "x"]
    m = evaluate_predictions(y_true, y_pred, classes=classes, proba=proba)
    text = format_report(m)
    lines = text.splitlines()
    for name in classes:
        row = next(line for line in lines if line.split() and line.split()[0] == name)
        assert row.split()[-1] == str(m["per_class"][name]["support"])
        assert float(row.split()[3]) == pytest.approx(m["per_class"][name]["f1"], abs=6e-4)
    assert "accuracy" in text and "macro avg" in text and "weighted avg" in text
    assert "log loss" in text and "top-3 accuracy" in text and "top-5 accuracy" in text
    # same columns as sklearn's report (precision / recall / f1 / support)
    sk = skm.classification_report(y_true, y_pred, labels=range(6), target_names=classes,
                                   zero_division=0, digits=3)
    sk_macro = next(line for line in sk.splitlines() if "macro avg" in line).split()
    ours_weighted = next(line for line in lines if "weighted avg" in line).split()
    sk_weighted = next(line for line in sk.splitlines() if "weighted avg" in line).split()
    assert ours_weighted[2:5] == sk_weighted[2:5]
    assert len(sk_macro) == 6


def test_log_loss_clips_a_zero_probability_like_scikit_learn():
    proba = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0]])
    y = np.array([1, 1, 2])  # the first row gives the true class 0: clipped at machine epsilon
    expected = -(np.log(np.finfo(np.float64).eps) + np.log(0.5) + np.log(1.0)) / 3
    assert log_loss(proba, y) == pytest.approx(expected, rel=1e-12)
    assert log_loss(proba, y) == pytest.approx(skm.log_loss(y, proba, labels=[0, 1, 2]), rel=1e-12)
    with pytest.raises(ParameterError, match="finite non-negative"):
        log_loss(-proba, y)
    with pytest.raises(ParameterError, match=r"y_true has class index 3 outside \[0, 3\)"):
        log_loss(proba, [0, 1, 3])
