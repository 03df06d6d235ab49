"""Calibrated probabilities and "unknown" answers of a checkpoint at inference time.

A checkpoint's ``calibration`` (:func:`calibration_of`)
holds the temperature fitted on the validation split and, optionally, an
"unknown" threshold.  :func:`calibrate_proba` is the one function that applies
the temperature (``softmax(log p / T)``, which equals ``softmax(z / T)`` of the
logits ``z`` since ``log p`` differs from ``z`` by a per-row constant);
:func:`apply_checkpoint_calibration` is what :func:`~soundclass.inference.predict.predict_paths`
and the web demo call on the probabilities of the model.
:func:`unknown_threshold` resolves ``--unknown-below`` / ``--unknown-precision``
against the checkpoint; :func:`with_unknown` turns rejected rows of
:class:`~soundclass.inference.predict.Predictions` into the label ``"unknown"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import ParameterError
from soundclass.inference.checkpoint import META_NAME, checkpoint_dir, read_checkpoint_meta
from soundclass.inference.checkpoint_checks import check_calibration
from soundclass.util.atomic import write_json_atomic

__all__ = ["UNKNOWN", "calibrate_proba", "apply_checkpoint_calibration", "unknown_threshold",
           "unknown_mask", "with_unknown"]

#: The label of a clip whose top calibrated probability is below the threshold.
UNKNOWN = "unknown"



def write_calibration(path: str | os.PathLike, calibration: Mapping[str, Any]) -> Path:
    """Add (or replace) the ``calibration`` entry of an existing checkpoint's ``model.json``.

    Parameters
    ----------
    path : path
        The checkpoint folder (or its ``model.json``).
    calibration : mapping
        See :func:`check_calibration`.

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


def calibration_of(checkpoint: Any) -> dict:
    """The calibration of a loaded checkpoint (``{"temperature": 1.0, ...}`` when it has none)."""
    meta = getattr(checkpoint, "meta", None) or {}
    cal = meta.get("calibration") if isinstance(meta, Mapping) else None
    if not cal:
        return {"temperature": 1.0, "unknown_threshold": None, "target_precision": None,
                "precision_thresholds": {}}
    return dict(cal)


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
    if isinstance(temperature, bool) or not (np.isfinite(temperature) and temperature > 0):
        raise ParameterError(f"temperature={temperature!r} must be a positive finite number")
    p = np.asarray(proba)
    if float(temperature) == 1.0 or p.size == 0:
        return p
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.log(p.astype(np.float64)) / float(temperature)
        z = z - np.max(z, axis=-1, keepdims=True)
        e = np.exp(z)
        out = e / e.sum(axis=-1, keepdims=True)
    return out.astype(p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64)


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


def unknown_mask(proba: np.ndarray, *, threshold: float | None) -> np.ndarray:
    """Rows whose top probability is below ``threshold`` [shape=(n,)] (NaN rows are not flagged)."""
    p = np.asarray(proba, dtype=np.float64)
    if threshold is None or p.size == 0:
        return np.zeros(p.shape[0], dtype=bool)
    with np.errstate(invalid="ignore"):
        top = np.nanmax(np.where(np.isnan(p), -np.inf, p), axis=1)
    return np.isfinite(top) & (top < threshold)


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
    if UNKNOWN in predictions.classes:
        raise ParameterError(f"a trained class is named {UNKNOWN!r}; it cannot be told from a rejection")
    rejected = unknown_mask(predictions.proba, threshold=threshold)
    extra = rejected.astype(predictions.proba.dtype)[:, None]
    extra[~predictions.ok] = np.nan
    return type(predictions)(predictions.paths, np.concatenate([predictions.proba, extra], axis=1),
                             dict(predictions.failures), (*predictions.classes, UNKNOWN))
