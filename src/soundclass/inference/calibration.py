"""Calibration, in one place: softmax, temperature scaling and the "unknown" answer.

Temperature scaling (Guo et al., 2017) divides the logits by one scalar
``T > 0`` fitted on held-out predictions (validation or out-of-fold) by
minimising the negative log-likelihood (:func:`fit_temperature`); it changes
no decision, only how confident the probabilities are.  It is applied to
logits (:func:`apply_temperature`: ``softmax(z / T)``) or to probabilities
(:func:`calibrate_proba`: ``softmax(log p / T)``, which is the same since
``log p`` differs from ``z`` by a per-row constant).

A classifier meets sounds of no trained class; a clip whose top probability
is below a threshold is answered :data:`UNKNOWN` (:func:`unknown_mask`,
:func:`apply_unknown`, :func:`with_unknown`), and
:func:`threshold_for_precision` picks that threshold on validation data for a
target precision of the accepted answers.

A checkpoint's ``calibration`` entry (:func:`calibration_of`,
:func:`write_calibration`) holds the fitted temperature and, optionally, the
"unknown" thresholds; :func:`apply_checkpoint_calibration` is what
:func:`~soundclass.inference.predict.predict_paths`, evaluation and the web
demo call on a model's probabilities, and :func:`unknown_threshold` resolves
``--unknown-below`` / ``--unknown-precision`` against the checkpoint.

Training fits the calibration (:mod:`soundclass.training.calibrate`),
evaluation measures it (:mod:`soundclass.evaluation.calibration_report`);
both use these functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from soundclass.checkpoint.format import (
    META_NAME,
    check_calibration,
    checkpoint_dir,
    read_checkpoint_meta,
)
from soundclass.errors import ParameterError
from soundclass.util.atomic import write_json_atomic

__all__ = [
    "UNKNOWN",
    "softmax",
    "check_proba",
    "fit_temperature",
    "apply_temperature",
    "calibrate_proba",
    "threshold_for_precision",
    "unknown_mask",
    "apply_unknown",
    "with_unknown",
    "calibration_of",
    "write_calibration",
    "apply_checkpoint_calibration",
    "unknown_threshold",
]

#: The label of a clip whose top calibrated probability is below the threshold.
UNKNOWN = "unknown"
_LOG_T_BOUNDS = (np.log(0.05), np.log(20.0))


def softmax(logits: np.ndarray, *, axis: int = -1, dtype: Any = np.float32) -> np.ndarray:
    """Numerically stable softmax (computed in float64).

    Parameters
    ----------
    logits : np.ndarray [shape=(..., n_classes, ...)]
        ``-inf`` entries get probability 0; a row with a NaN stays NaN.
    axis : int
        The class axis.
    dtype : numpy dtype
        Of the result (float32, as the predictor returns, by default).

    Returns
    -------
    np.ndarray, the shape of ``logits``
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(dtype)


def _check_temperature(temperature: float) -> float:
    if isinstance(temperature, bool) or not (np.isfinite(temperature) and temperature > 0):
        raise ParameterError(f"temperature={temperature!r} must be a positive finite number")
    return float(temperature)


def _check_labels(y_true: Any, n: int, n_classes: int) -> np.ndarray:
    y = np.asarray(y_true)
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer):
        raise ParameterError(f"y_true must be {n} integer class indices, got {y.dtype} {y.shape}")
    if y.min() < 0 or y.max() >= n_classes:
        raise ParameterError(f"y_true has indices outside 0..{n_classes - 1}")
    return y.astype(np.int64)


def _check_logits(logits: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] == 0 or z.shape[1] < 2:
        raise ParameterError(f"logits must have shape (n >= 1, n_classes >= 2), got {z.shape}")
    if not np.isfinite(z).all():
        raise ParameterError("logits contain NaN or infinite values")
    return z, _check_labels(y_true, *z.shape)


def check_proba(proba: Any, y_true: Any = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Held-out probabilities (and their labels) as float64 and int64, checked.

    Parameters
    ----------
    proba : array-like [shape=(n, n_classes)]
        ``n >= 1``, ``n_classes >= 2``, finite and non-negative.
    y_true : array-like of int [shape=(n,)], optional
        Class indices in ``0 .. n_classes - 1``.

    Returns
    -------
    proba : np.ndarray of float64 [shape=(n, n_classes)]
    y_true : np.ndarray of int64 [shape=(n,)] or None

    Raises
    ------
    ParameterError
        A shape, value or label out of the above.
    """
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise ParameterError(f"proba must have shape (n >= 1, n_classes >= 2), got {p.shape}")
    if not np.isfinite(p).all() or (p < 0).any():
        raise ParameterError("proba must be finite and non-negative")
    return p, None if y_true is None else _check_labels(y_true, *p.shape)


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
    t = _check_temperature(temperature)
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ParameterError(f"logits must have shape (n, n_classes), got {z.shape}")
    return softmax(z / t, axis=1, dtype=np.float64)


def calibrate_proba(proba: np.ndarray, *, temperature: float) -> np.ndarray:
    """``softmax(log(proba) / temperature)``, row by row.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
        Softmax probabilities of a model (rows of NaN stay NaN).
    temperature : float > 0
        ``1`` returns ``proba`` unchanged.

    Returns
    -------
    np.ndarray [shape=(n, n_classes)], the dtype of ``proba``
    """
    t = _check_temperature(temperature)
    p = np.asarray(proba)
    if t == 1.0 or p.size == 0:
        return p
    dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
    with np.errstate(divide="ignore", invalid="ignore"):
        return softmax(np.log(p.astype(np.float64)) / t, axis=-1, dtype=dtype)


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
    p, y = check_proba(proba, y_true)
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


def unknown_mask(proba: np.ndarray, *, threshold: float | None) -> np.ndarray:
    """Rows whose top probability is below ``threshold`` [shape=(n,)] (NaN rows are not flagged)."""
    p = np.asarray(proba, dtype=np.float64)
    if threshold is None or p.size == 0:
        return np.zeros(p.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1)
    return np.isfinite(top) & (top < threshold)


def _refuse_unknown_class(classes: Sequence[str]) -> None:
    if UNKNOWN in classes:
        raise ParameterError(f"a trained class is named {UNKNOWN!r}; it cannot be told from a rejection")


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
    p, _ = check_proba(proba)
    classes = [str(c) for c in classes]
    if len(classes) != p.shape[1]:
        raise ParameterError(f"{len(classes)} class names for {p.shape[1]} probability columns")
    _refuse_unknown_class(classes)
    if not (isinstance(threshold, (int, float, np.floating)) and 0 <= threshold <= 1 + 1e-9):
        raise ParameterError(f"threshold={threshold!r} must be in [0, 1]")
    rejected = unknown_mask(p, threshold=threshold)
    return [UNKNOWN if r else classes[t] for t, r in zip(p.argmax(axis=1), rejected, strict=True)]


def with_unknown(predictions: Any, *, threshold: float | None) -> Any:
    """Predictions whose rejected rows are labelled ``"unknown"`` by any top-k writer.

    Adds a last ``"unknown"`` column: ``1`` on rows whose top probability is
    below ``threshold``, ``0`` elsewhere, so the most probable "class" of a
    rejected row is ``"unknown"`` (its next labels are still the model's best
    guesses) and an accepted row's labels are unchanged.  NaN (failed) rows
    stay NaN.  Returns ``predictions`` itself when ``threshold`` is ``None``.
    """
    if threshold is None:
        return predictions
    _refuse_unknown_class(predictions.classes)
    rejected = unknown_mask(predictions.proba, threshold=threshold)
    extra = rejected.astype(predictions.proba.dtype)[:, None]
    extra[~predictions.ok] = np.nan
    return type(predictions)(predictions.paths, np.concatenate([predictions.proba, extra], axis=1),
                             dict(predictions.failures), (*predictions.classes, UNKNOWN))


def calibration_of(checkpoint: Any) -> dict:
    """The calibration of a loaded checkpoint (``{"temperature": 1.0, ...}`` when it has none)."""
    meta = getattr(checkpoint, "meta", None) or {}
    cal = meta.get("calibration") if isinstance(meta, Mapping) else None
    if not cal:
        return {"temperature": 1.0, "unknown_threshold": None, "target_precision": None,
                "precision_thresholds": {}}
    return dict(cal)


def write_calibration(path: str | os.PathLike, calibration: Mapping[str, Any]) -> Path:
    """Add (or replace) the ``calibration`` entry of an existing checkpoint's ``model.json``.

    Parameters
    ----------
    path : path
        The checkpoint folder (or its ``model.json``).
    calibration : mapping
        See :func:`~soundclass.checkpoint.format.check_calibration`.

    Returns
    -------
    pathlib.Path
        The ``model.json`` written.
    """
    meta_path = checkpoint_dir(path) / META_NAME
    meta = read_checkpoint_meta(meta_path)
    meta["calibration"] = check_calibration(calibration, meta_path)
    write_json_atomic(meta_path, meta, indent=2, allow_nan=True)
    return meta_path


def apply_checkpoint_calibration(checkpoint: Any, proba: np.ndarray) -> np.ndarray:
    """``proba`` with the checkpoint's temperature applied (unchanged for uncalibrated checkpoints)."""
    return calibrate_proba(proba, temperature=float(calibration_of(checkpoint)["temperature"]))


def unknown_threshold(checkpoint: Any, *, below: float | None = None, precision: float | None = None) -> float | None:
    """The "unknown" threshold to use: explicit, for a target precision, or the checkpoint's.

    Parameters
    ----------
    checkpoint : Checkpoint
    below : float in [0, 1], optional
        ``--unknown-below P``: answer "unknown" below ``P`` (``0``: never).
    precision : float in (0, 1], optional
        ``--unknown-precision Q``: the threshold chosen on the validation split
        at training time for precision ``Q`` (the trained target, else the
        stored table's entry for the smallest precision ``>= Q``).

    Returns
    -------
    float or None
        ``None``: no "unknown" answers (nothing given, and the checkpoint was
        trained without ``--unknown-precision``).

    Raises
    ------
    ParameterError
        Both given, a value out of range, or no stored threshold for ``Q``.
    """
    if below is not None and precision is not None:
        raise ParameterError("give --unknown-below or --unknown-precision, not both")
    if below is not None:
        if isinstance(below, bool) or not 0 <= below <= 1:
            raise ParameterError(f"unknown_below={below!r} must be in [0, 1]")
        return float(below) if below > 0 else None
    cal = calibration_of(checkpoint)
    where = getattr(checkpoint, "path", "the checkpoint")
    if precision is None:
        thr = cal.get("unknown_threshold")
        return None if thr is None else float(thr)
    if isinstance(precision, bool) or not 0 < precision <= 1:
        raise ParameterError(f"unknown_precision={precision!r} must be in (0, 1]")
    if cal.get("target_precision") is not None and abs(cal["target_precision"] - precision) < 1e-9:
        return float(cal["unknown_threshold"])
    table = {float(k): float(v) for k, v in (cal.get("precision_thresholds") or {}).items()}
    above = sorted(q for q in table if q >= precision - 1e-9)
    if not above:
        have = ", ".join(f"{q:g}" for q in sorted(table)) or "none (trained without a validation split?)"
        raise ParameterError(
            f"{where}: no threshold stored for precision {precision:g} (stored: {have}); "
            "use --unknown-below P, or train with --unknown-precision Q"
        )
    return table[above[0]]
