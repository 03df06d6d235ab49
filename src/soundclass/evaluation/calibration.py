"""Calibrated probabilities and an "unknown" answer.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar
``T > 0`` fitted on held-out predictions (validation or out-of-fold) by
minimising the negative log-likelihood; it changes no decision, only how
confident the probabilities are.  Calibration is measured by the expected
calibration error (ECE) and shown as a reliability curve
(:func:`soundclass.plots.calibration.plot_reliability`).

A classifier meets sounds of no trained class; :func:`apply_unknown` answers
``"unknown"`` when the top probability is below a threshold, which
:func:`threshold_for_precision` picks on validation data for a target
precision of the accepted answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "UNKNOWN",
    "ReliabilityCurve",
    "fit_temperature",
    "apply_temperature",
    "log_loss",
    "expected_calibration_error",
    "reliability_curve",
    "threshold_for_precision",
    "apply_unknown",
]

#: The label :func:`apply_unknown` gives to rejected clips.
UNKNOWN = "unknown"
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration of top-class predictions.

    Attributes
    ----------
    bin_edges : np.ndarray [shape=(n_bins + 1,)]
        Confidence bin edges, ``0 .. 1``.
    confidence : np.ndarray [shape=(n_bins,)]
        Mean top probability of the clips in each bin (NaN if empty).
    accuracy : np.ndarray [shape=(n_bins,)]
        Fraction of those clips predicted correctly (NaN if empty).
    count : np.ndarray of int [shape=(n_bins,)]
        Clips per bin.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray


def _check_logits(logits, y_true) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_true)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ParameterError(f"logits must have shape (n >= 1, n_classes >= 2), got {z.shape}")
    if not np.isfinite(z).all():
        raise ParameterError("logits contain NaN or infinite values")
    if y.shape != (z.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"y_true must be {z.shape[0]} integer class indices, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= z.shape[1]:
        raise ParameterError(f"y_true has indices outside 0..{z.shape[1] - 1}")
    return z, y.astype(np.int64)


def _check_proba(proba, y_true=None) -> tuple[np.ndarray, np.ndarray | None]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ParameterError(f"proba must have shape (n >= 1, n_classes >= 2), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ParameterError("proba must be finite and non-negative")
    if y_true is None:
        return p, None
    y = np.asarray(y_true)
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"y_true must be {p.shape[0]} integer class indices, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= p.shape[1]:
        raise ParameterError(f"y_true has indices outside 0..{p.shape[1] - 1}")
    return p, y.astype(np.int64)


def _nll(z: np.ndarray, y: np.ndarray) -> float:
    return float(-log_softmax(z, axis=1)[np.arange(y.size), y].mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature minimising the NLL of ``softmax(logits / T)``.

    Parameters
    ----------
    logits : np.ndarray [shape=(n, n_classes)]
        Held-out logits (validation or out-of-fold), not training-set logits.
    y_true : np.ndarray of int [shape=(n,)]
        True class indices.

    Returns
    -------
    float
        ``T`` in ``[0.05, 20]`` (bounded search on ``log T``); ``T > 1`` softens
        an over-confident model, ``T < 1`` sharpens an under-confident one.
    """
    z, y = _check_logits(logits, y_true)
    result = minimize_scalar(
        lambda log_t: _nll(z / np.exp(log_t), y), bounds=_LOG_T_BOUNDS, method="bounded",
        options={"xatol": 1e-5},
    )
    t = float(np.exp(result.x))
    # the bounded search never evaluates T = 1 exactly; keep it if it is no worse
    return t if _nll(z / t, y) <= _nll(z, y) else 1.0


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated probabilities ``softmax(logits / temperature)``.

    Parameters
    ----------
    logits : np.ndarray [shape=(n, n_classes)]
    temperature : float > 0

    Returns
    -------
    np.ndarray of float64 [shape=(n, n_classes)]
    """
    if isinstance(temperature, bool) or not (np.isfinite(temperature) and temperature > 0):
        raise ParameterError(f"temperature={temperature!r} must be a positive finite number")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ParameterError(f"logits must have shape (n, n_classes), got {z.shape}")
    return softmax(z / float(temperature), axis=1)


def log_loss(proba: np.ndarray, y_true: np.ndarray, *, eps: float = 1e-12) -> float:
    """Mean negative log-probability of the true class (natural log)."""
    p, y = _check_proba(proba, y_true)
    return float(-np.log(np.clip(p[np.arange(y.size), y], eps, 1.0)).mean())


def _bin_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, check_positive_int("n_bins", n_bins) + 1)


def reliability_curve(proba: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15) -> ReliabilityCurve:
    """Accuracy against confidence of the top-class predictions, in equal-width bins.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
        Predicted probabilities.
    y_true : np.ndarray of int [shape=(n,)]
    n_bins : int
        Bins over ``[0, 1]``; bin ``b`` holds confidences in ``(edges[b], edges[b+1]]``
        (the first bin also holds 0).

    Returns
    -------
    ReliabilityCurve
    """
    p, y = _check_proba(proba, y_true)
    edges = _bin_edges(n_bins)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, len(edges) - 2)
    count = np.bincount(b, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(b, weights=conf, minlength=len(edges) - 1) / count
        acc = np.bincount(b, weights=correct, minlength=len(edges) - 1) / count
    return ReliabilityCurve(bin_edges=edges, confidence=mean_conf, accuracy=acc, count=count)


def expected_calibration_error(proba: np.ndarray, y_true: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE: the count-weighted mean ``|accuracy - confidence|`` over confidence bins.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
    y_true : np.ndarray of int [shape=(n,)]
    n_bins : int
        Equal-width bins as in :func:`reliability_curve`.

    Returns
    -------
    float in [0, 1]
    """
    curve = reliability_curve(proba, y_true, n_bins=n_bins)
    full = curve.count > 0
    gaps = np.abs(curve.accuracy[full] - curve.confidence[full])
    return float((curve.count[full] * gaps).sum() / curve.count.sum())


def threshold_for_precision(proba: np.ndarray, y_true: np.ndarray, *, target_precision: float) -> float:
    """The lowest top-probability threshold at which accepted predictions reach a precision.

    A clip is accepted when its top probability is ``>= threshold``; the
    precision is the accuracy of the accepted clips.  Candidates are the
    observed top probabilities (so the answer is reproducible on the data).

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
        Validation (or out-of-fold) probabilities, calibrated if they will be.
    y_true : np.ndarray of int [shape=(n,)]
    target_precision : float in (0, 1]

    Returns
    -------
    float
        The threshold; ``0.0`` if every clip may be accepted, and ``1.0 + 1e-9``
        (reject all) if no threshold reaches the target.
    """
    if not (isinstance(target_precision, (int, float, np.floating)) and 0 < target_precision <= 1):
        raise ParameterError(f"target_precision={target_precision!r} must be in (0, 1]")
    p, y = _check_proba(proba, y_true)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    order = np.argsort(-conf, kind="stable")
    conf_sorted, correct_sorted = conf[order], correct[order]
    precision = np.cumsum(correct_sorted) / np.arange(1, conf.size + 1)
    # accepting everything >= conf_sorted[k] accepts the last index of that value
    last = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    ok = last & (precision >= target_precision - 1e-12)
    if not ok.any():
        return 1.0 + 1e-9
    k = int(np.nonzero(ok)[0].max())
    return 0.0 if k == conf.size - 1 else float(conf_sorted[k])


def apply_unknown(proba: np.ndarray, classes: Sequence[str], *, threshold: float) -> list[str]:
    """Top-class labels, ``"unknown"`` where the top probability is below ``threshold``.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
    classes : sequence of str [shape=(n_classes,)]
        Class names in probability column order.
    threshold : float in [0, 1 + 1e-9]
        ``0`` accepts everything.

    Returns
    -------
    list of str [shape=(n,)]
    """
    p, _ = _check_proba(proba)
    classes = [str(c) for c in classes]
    if len(classes) != p.shape[1]:
        raise ParameterError(f"{len(classes)} class names for {p.shape[1]} probability columns")
    if UNKNOWN in classes:
        raise ParameterError(f"a trained class is named {UNKNOWN!r}; it cannot be told from a rejection")
    if not (isinstance(threshold, (int, float, np.floating)) and 0 <= threshold <= 1 + 1e-9):
        raise ParameterError(f"threshold={threshold!r} must be in [0, 1]")
    top = p.argmax(axis=1)
    conf = p[np.arange(p.shape[0]), top]
    return [classes[t] if c >= threshold else UNKNOWN for t, c in zip(top, conf, strict=True)]
