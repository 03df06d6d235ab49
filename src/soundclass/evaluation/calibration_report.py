"""Calibration of an evaluation: ECE before/after temperature scaling and a reliability diagram.

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
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.evaluation.calibration import (
    expected_calibration_error,
    log_loss,
    reliability_curve,
)
from soundclass.inference.calibrated import calibrate_proba, unknown_mask

__all__ = ["calibration_summary", "calibration_html"]


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
