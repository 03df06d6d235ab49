"""Classification metrics in plain numpy.

Conventions (the same as scikit-learn with ``zero_division=0``):

* rows of the confusion matrix are true classes, columns predicted classes;
* a ratio whose denominator is zero is ``0.0`` (precision of a class never
  predicted, recall of a class absent from ``y_true``, their F1);
* ``macro_f1`` averages over the classes that occur in ``y_true`` or
  ``y_pred`` (scikit-learn's ``labels=None``), so a class absent from both
  does not drag the average down; ``weighted_f1`` weights by support;
* ``balanced_accuracy`` is the mean recall over classes present in ``y_true``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from soundclass.errors import ParameterError, check_positive_int

__all__ = ["confusion_matrix", "evaluate_predictions", "format_report", "log_loss", "TOP_K"]

TOP_K = (3, 5)


def _as_labels(y: Any, *, name: str, n_classes: int) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ParameterError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= n_classes)
    if np.any(bad):
        raise ParameterError(
            f"{name} has class index {arr[bad][0]} outside [0, {n_classes}) (n_classes={n_classes})"
        )
    return arr


def _check_pair(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    check_positive_int("n_classes", n_classes)
    t = _as_labels(y_true, name="y_true", n_classes=int(n_classes))
    p = _as_labels(y_pred, name="y_pred", n_classes=int(n_classes))
    if t.shape != p.shape:
        raise ParameterError(f"y_true has {t.size} items but y_pred has {p.size}")
    return t, p


def confusion_matrix(y_true: Any, y_pred: Any, *, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs.

    Parameters
    ----------
    y_true, y_pred : array-like of int [shape=(n,)]
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes (rows and columns), including absent ones.

    Returns
    -------
    C : np.ndarray of int64 [shape=(n_classes, n_classes)]
        ``C[i, j]`` = number of items of true class ``i`` predicted as ``j``.
    """
    t, p = _check_pair(y_true, y_pred, n_classes)
    flat = np.bincount(t * int(n_classes) + p, minlength=int(n_classes) ** 2)
    return flat.reshape(int(n_classes), int(n_classes)).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _check_proba(proba: Any, n: int, n_classes: int, *, normalised: bool = True) -> np.ndarray:
    P = np.asarray(proba, dtype=np.float64)
    if P.shape != (n, n_classes):
        raise ParameterError(f"proba must have shape ({n}, {n_classes}), got {P.shape}")
    if not np.all(np.isfinite(P)) or np.any(P < 0):
        raise ParameterError("proba must hold finite non-negative probabilities")
    sums = P.sum(axis=1)
    if normalised and n and not np.allclose(sums, 1.0, atol=1e-3):
        i = int(np.argmax(np.abs(sums - 1.0)))
        raise ParameterError(f"proba rows must sum to 1 (row {i} sums to {sums[i]:.6g}); apply softmax first")
    return P


def log_loss(proba: Any, y_true: Any) -> float:
    """Mean negative log-probability of the true class (natural log), as scikit-learn's.

    Parameters
    ----------
    proba : array-like [shape=(n, n_classes)]
        Finite, non-negative probabilities.
    y_true : array-like of int [shape=(n,)]
        Class indices.

    Returns
    -------
    float
        Probabilities are clipped at float64's machine epsilon (``2.2e-16``)
        before the log, as :func:`sklearn.metrics.log_loss` does.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ParameterError(f"proba must have shape (n >= 1, n_classes >= 2), got {p.shape}")
    y = _as_labels(y_true, name="y_true", n_classes=p.shape[1])
    p = _check_proba(p, y.size, p.shape[1], normalised=False)
    eps = np.finfo(np.float64).eps
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], eps, 1.0))))


def _top_k_accuracy(y_true: np.ndarray, P: np.ndarray, k: int) -> float:
    # A hit when fewer than k classes score strictly higher than the true class.
    true_score = P[np.arange(y_true.size), y_true]
    higher = np.sum(P > true_score[:, None], axis=1)
    return float(np.mean(higher < k))


def evaluate_predictions(
    y_true: Any,
    y_pred: Any,
    *,
    classes: Sequence[str],
    proba: Any | None = None,
) -> dict[str, Any]:
    """Every standard clip-classification metric, as a JSON-ready dict.

    Parameters
    ----------
    y_true, y_pred : array-like of int [shape=(n,)]
        Class indices into ``classes``.
    classes : sequence of str [shape=(n_classes,)]
        Class names, in index order.
    proba : array-like [shape=(n, n_classes)], optional
        Predicted probabilities (rows sum to 1). Adds ``log_loss`` and
        ``top3_accuracy`` / ``top5_accuracy`` (only for ``k < n_classes``).

    Returns
    -------
    dict
        ``n``, ``classes``, ``accuracy``, ``macro_f1``, ``weighted_f1``,
        ``macro_precision``, ``macro_recall``, ``balanced_accuracy``,
        ``per_class`` (``{name: {precision, recall, f1, support}}``),
        ``confusion_matrix`` (list of lists, rows = true class), and with
        ``proba`` also ``log_loss`` and ``top{k}_accuracy``. Zero-division
        ratios are 0.0 (see the module docstring).

    Raises
    ------
    ParameterError
        If ``y_true`` is empty, lengths differ or an index is out of range.
    """
    classes = [str(c) for c in classes]
    n_classes = len(classes)
    t, p = _check_pair(y_true, y_pred, n_classes)
    if t.size == 0:
        raise ParameterError("cannot evaluate an empty set of predictions (y_true has 0 items)")
    C = confusion_matrix(t, p, n_classes=n_classes)
    tp = np.diag(C).astype(np.float64)
    support = C.sum(axis=1)
    predicted = C.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    seen = (support + predicted) > 0
    present = support > 0
    out: dict[str, Any] = {
        "n": int(t.size),
        "classes": classes,
        "accuracy": float(tp.sum() / t.size),
        "macro_f1": float(f1[seen].mean()),
        "weighted_f1": float(np.sum(f1 * support) / support.sum()),
        "macro_precision": float(precision[seen].mean()),
        "macro_recall": float(recall[seen].mean()),
        "balanced_accuracy": float(recall[present].mean()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": C.tolist(),
    }
    if proba is not None:
        P = _check_proba(proba, t.size, n_classes)
        out["log_loss"] = log_loss(P, t)
        for k in TOP_K:
            if k < n_classes:
                out[f"top{k}_accuracy"] = _top_k_accuracy(t, P, k)
    return out


def format_report(metrics: dict[str, Any], *, digits: int = 3) -> str:
    """A per-class text table, like scikit-learn's ``classification_report``.

    Parameters
    ----------
    metrics : dict
        The output of :func:`evaluate_predictions`.
    digits : int
        Decimals of the ratios.

    Returns
    -------
    str
        One row per class (precision, recall, f1, support), then accuracy,
        macro and weighted averages, balanced accuracy and, when present,
        log loss and top-k accuracies.
    """
    per_class = metrics["per_class"]
    names = list(per_class)
    width = max([len(n) for n in names] + [len("weighted avg"), len("balanced accuracy")])
    col = max(digits + 3, 9)
    head = f"{'':>{width}} {'precision':>{col}} {'recall':>{col}} {'f1-score':>{col}} {'support':>{col}}"
    lines = [head, ""]

    def row(label: str, values: Sequence[float | None], support: int) -> str:
        cells = [f"{'':>{col}}" if v is None else f"{v:>{col}.{digits}f}" for v in values]
        return f"{label:>{width}} {' '.join(cells)} {support:>{col}d}"

    for name in names:
        m = per_class[name]
        lines.append(row(name, (m["precision"], m["recall"], m["f1"]), m["support"]))
    total = int(metrics["n"])
    lines.append("")
    lines.append(row("accuracy", (None, None, metrics["accuracy"]), total))
    lines.append(
        row("macro avg", (metrics["macro_precision"], metrics["macro_recall"], metrics["macro_f1"]), total)
    )
    w = np.array([m["support"] for m in per_class.values()], dtype=np.float64)
    wp = float(np.dot(w, [m["precision"] for m in per_class.values()]) / max(w.sum(), 1.0))
    wr = float(np.dot(w, [m["recall"] for m in per_class.values()]) / max(w.sum(), 1.0))
    lines.append(row("weighted avg", (wp, wr, metrics["weighted_f1"]), total))
    lines.append(row("balanced accuracy", (None, None, metrics["balanced_accuracy"]), total))
    extras = []
    if "log_loss" in metrics:
        extras.append(f"log loss: {metrics['log_loss']:.{digits + 1}f}")
    for k in TOP_K:
        key = f"top{k}_accuracy"
        if key in metrics:
            extras.append(f"top-{k} accuracy: {metrics[key]:.{digits}f}")
    if extras:
        lines.append("")
        lines.append("   ".join(extras))
    return "\n".join(lines) + "\n"
