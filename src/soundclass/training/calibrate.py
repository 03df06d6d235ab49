"""Calibrate a trained checkpoint on its validation split.

After :func:`soundclass.training.fit`, the trainer calls :func:`calibrate_run`
with the best model's validation probabilities:

1. temperature scaling (:func:`soundclass.inference.calibration.fit_temperature`)
   on ``log p`` (the logits up to a per-row constant, which the softmax ignores);
2. the expected calibration error and log loss before and after;
3. "unknown" thresholds of the calibrated top probability for precisions
   0.50, 0.51 .. 0.99, 1.00 (:func:`~soundclass.inference.calibration.threshold_for_precision`),
   and, with ``config.unknown_precision``, the one the checkpoint applies by default;
4. all of it as the checkpoint's ``calibration`` entry
   (:func:`soundclass.inference.calibration.write_calibration`).

The validation split chooses both the best epoch and the temperature, so the
numbers are slightly optimistic; they are the ones a run without a separate
calibration set can give.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from soundclass.evaluation.calibration_report import expected_calibration_error
from soundclass.evaluation.metrics import log_loss
from soundclass.inference.calibration import (
    calibrate_proba,
    fit_temperature,
    threshold_for_precision,
    write_calibration,
)

__all__ = ["MIN_CALIBRATION_CLIPS", "PRECISION_GRID", "calibration_from_validation", "calibrate_run"]

#: Fewer validation clips than this keep ``T = 1`` (the fit would follow noise).
MIN_CALIBRATION_CLIPS = 20
_T_RANGE = (0.051, 19.9)  # inside fit_temperature's bounds [0.05, 20]

#: Target precisions whose thresholds every calibrated checkpoint stores (``--unknown-precision Q``).
PRECISION_GRID = tuple(round(0.5 + 0.01 * k, 2) for k in range(51))


def _logits(proba: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(proba, dtype=np.float64), 1e-12, 1.0))


def calibration_from_validation(
    proba: np.ndarray, y_true: np.ndarray, *, target_precision: float | None = None
) -> dict[str, Any]:
    """The ``calibration`` entry of a checkpoint from held-out probabilities.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
        Uncalibrated validation (or out-of-fold) probabilities.
    y_true : np.ndarray of int [shape=(n,)]
    target_precision : float in (0, 1], optional
        Sets ``unknown_threshold`` (else ``None``: no "unknown" answers by default).

    Returns
    -------
    dict
        ``temperature``, ``unknown_threshold``, ``target_precision``,
        ``precision_thresholds``, ``ece``, ``ece_calibrated``, ``log_loss``,
        ``log_loss_calibrated``, ``n``, ``note`` (why ``T = 1`` was kept:
        fewer than :data:`MIN_CALIBRATION_CLIPS` clips, or a fit at the search
        bound, as a perfectly separated validation set gives).
    """
    y = np.asarray(y_true, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    t = fit_temperature(_logits(proba), y)
    note = None
    if y.size < MIN_CALIBRATION_CLIPS:
        t, note = 1.0, f"not calibrated: {y.size} validation clips (fewer than {MIN_CALIBRATION_CLIPS})"
    elif not _T_RANGE[0] < t < _T_RANGE[1]:  # e.g. a perfectly separated validation set wants T -> 0
        t, note = 1.0, f"not calibrated: the fitted temperature {t:.3g} is at the search bound"
    cal = calibrate_proba(proba, temperature=t)
    table = {f"{q:.2f}": threshold_for_precision(cal, y, target_precision=q) for q in PRECISION_GRID}
    thr = None if target_precision is None else threshold_for_precision(cal, y, target_precision=target_precision)
    return {
        "temperature": float(t),
        "unknown_threshold": thr,
        "target_precision": None if target_precision is None else float(target_precision),
        "precision_thresholds": table,
        "ece": expected_calibration_error(proba, y),
        "ece_calibrated": expected_calibration_error(cal, y),
        "log_loss": log_loss(proba, y),
        "log_loss_calibrated": log_loss(cal, y),
        "n": int(y.size),
        "note": note,
    }


def calibrate_run(result: Any, y_val: np.ndarray, config: Any) -> dict[str, Any] | None:
    """Fit the calibration of a finished fit and store it in its checkpoint.

    Parameters
    ----------
    result : soundclass.training.fitting.FitResult
        With ``checkpoint_dir`` and ``val_proba`` (``None`` without a validation split).
    y_val : np.ndarray of int [shape=(n_val,)]
    config : TrainConfig
        ``config.unknown_precision`` picks the default "unknown" threshold.

    Returns
    -------
    dict or None
        The calibration written, ``None`` without validation clips (the
        checkpoint then stays uncalibrated, ``T = 1``).
    """
    proba = getattr(result, "val_proba", None)
    if proba is None or len(y_val) == 0:
        return None
    cal = calibration_from_validation(proba, y_val, target_precision=config.unknown_precision)
    write_calibration(os.fspath(result.checkpoint_dir), cal)
    return cal
