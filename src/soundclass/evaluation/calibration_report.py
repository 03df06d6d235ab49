"""Measuring calibration: log loss, expected calibration error, reliability curve and diagram.

Calibration is measured by the expected calibration error (ECE,
:func:`expected_calibration_error`) and shown as a reliability curve
(:func:`reliability_curve`, drawn by
:func:`soundclass.plots.calibration.plot_reliability`); the temperature and
the "unknown" threshold themselves come from :mod:`soundclass.inference.calibration`.

:func:`calibration_summary` measures the probabilities an evaluation shows
(calibrated with the checkpoint's temperature) against the model's raw softmax
(``softmax(log p * T)`` undoes the temperature exactly), draws both
reliability curves into ``reliability.png``
(:func:`soundclass.plots.calibration.plot_reliability`) and returns the
``metrics.json`` entry that :func:`calibration_html` shows in ``report.html``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import check_positive_int
from soundclass.evaluation.metrics import log_loss
from soundclass.inference.calibration import calibrate_proba, check_proba, unknown_mask

__all__ = [
    "ReliabilityCurve",
    "reliability_curve",
    "expected_calibration_error",
    "calibration_summary",
    "calibration_html",
]


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
    p, y = check_proba(proba, y_true)
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


def calibration_summary(
    proba: np.ndarray,
    y_true: np.ndarray,
    *,
    calibration: Mapping[str, Any] | None,
    out_dir: str | Path,
) -> tuple[dict[str, Any], Path]:
    """ECE and log loss before/after calibration, the "unknown" rate, and ``reliability.png``.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
        The evaluated (calibrated) probabilities.
    y_true : np.ndarray of int [shape=(n,)]
    calibration : mapping or None
        The checkpoint's ``calibration`` (``None``: ``temperature = 1``).
    out_dir : path
        Where ``reliability.png`` goes.

    Returns
    -------
    summary : dict
        ``temperature``, ``ece_uncalibrated``, ``ece``, ``log_loss_uncalibrated``,
        ``log_loss``, ``unknown_threshold``, ``target_precision``,
        ``unknown_rate`` and ``accepted_accuracy`` (at the threshold).
    png : Path
    """
    from soundclass.plots import new_figure, save_figure
    from soundclass.plots.calibration import plot_reliability

    cal = dict(calibration or {})
    t = float(cal.get("temperature") or 1.0)
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(proba, dtype=np.float64)
    raw = calibrate_proba(p, temperature=1.0 / t)
    thr = cal.get("unknown_threshold")
    out: dict[str, Any] = {
        "temperature": t,
        "ece_uncalibrated": expected_calibration_error(raw, y), "ece": expected_calibration_error(p, y),
        "log_loss_uncalibrated": log_loss(raw, y), "log_loss": log_loss(p, y),
        "unknown_threshold": thr, "target_precision": cal.get("target_precision"),
    }
    if thr is not None:
        rejected = unknown_mask(p, threshold=thr)
        accepted = ~rejected
        out["unknown_rate"] = float(rejected.mean())
        out["accepted_accuracy"] = (float((p[accepted].argmax(1) == y[accepted]).mean())
                                    if accepted.any() else None)
    fig, axes = new_figure(figsize=(11.0, 4.2), ncols=2)
    plot_reliability(reliability_curve(raw, y), ax=axes[0], ece=out["ece_uncalibrated"], label="uncalibrated")
    axes[0].set_title(f"Before calibration (ECE {out['ece_uncalibrated']:.3f})")
    plot_reliability(reliability_curve(p, y), ax=axes[1], ece=out["ece"], label=f"T = {t:.2f}")
    axes[1].set_title(f"After temperature scaling, T = {t:.2f} (ECE {out['ece']:.3f})")
    png = Path(save_figure(fig, Path(out_dir) / "reliability.png"))
    return out, png


def calibration_html(summary: Mapping[str, Any] | None) -> str:
    """The table of :func:`calibration_summary` for ``report.html`` (``""`` when absent)."""
    if not summary:
        return ""

    def fmt(v: Any) -> str:
        return "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else html.escape(str(v)))

    rows = [
        ("temperature (fitted on the validation split)", summary.get("temperature")),
        ("expected calibration error, uncalibrated", summary.get("ece_uncalibrated")),
        ("expected calibration error, calibrated", summary.get("ece")),
        ("log loss, uncalibrated", summary.get("log_loss_uncalibrated")),
        ("log loss, calibrated", summary.get("log_loss")),
    ]
    if summary.get("unknown_threshold") is not None:
        rows += [
            ("'unknown' below top probability", summary.get("unknown_threshold")),
            ("target precision", summary.get("target_precision")),
            ("share answered 'unknown'", summary.get("unknown_rate")),
            ("accuracy of the accepted answers", summary.get("accepted_accuracy")),
        ]
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"
