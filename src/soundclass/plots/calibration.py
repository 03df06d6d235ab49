"""Reliability diagram: is a classifier as sure as it is right?

Draws a curve from :func:`soundclass.evaluation.calibration_report.reliability_curve`
(any object with ``bin_edges``, ``confidence``, ``accuracy`` and ``count``
arrays) on a given axes; never calls ``show()``.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes

from soundclass.errors import ParameterError

__all__ = ["plot_reliability"]


def _curve_arrays(curve) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    try:
        edges = np.asarray(curve.bin_edges, dtype=np.float64)
        conf = np.asarray(curve.confidence, dtype=np.float64)
        acc = np.asarray(curve.accuracy, dtype=np.float64)
        count = np.asarray(curve.count, dtype=np.float64)
    except AttributeError as exc:
        raise ParameterError(f"curve must have bin_edges, confidence, accuracy and count ({exc})") from exc
    n = edges.size - 1
    if n < 1 or conf.shape != (n,) or acc.shape != (n,) or count.shape != (n,):
        raise ParameterError(
            f"curve arrays disagree: {edges.size} edges, confidence {conf.shape}, "
            f"accuracy {acc.shape}, count {count.shape}"
        )
    return edges, conf, acc, count


def plot_reliability(curve, *, ax: Axes, ece: float | None = None, label: str | None = None) -> Axes:
    """Accuracy per confidence bin as bars against the diagonal of perfect calibration.

    Parameters
    ----------
    curve : ReliabilityCurve
        ``bin_edges`` [shape=(n_bins + 1,)], ``confidence``, ``accuracy`` and
        ``count`` [shape=(n_bins,)]; empty bins (count 0) are not drawn.
    ax : matplotlib.axes.Axes
        Where to draw.
    ece : float, optional
        Expected calibration error, shown in the title.
    label : str, optional
        Legend label of the bars (e.g. ``'calibrated'``).

    Returns
    -------
    Axes
        ``ax``, with the bin counts as a faint histogram on a twin axis.
    """
    edges, conf, acc, count = _curve_arrays(curve)
    full = count > 0
    widths = np.diff(edges)
    ax.bar(edges[:-1][full], acc[full], width=widths[full], align="edge", color="C0",
           edgecolor="white", alpha=0.85, label=label or "accuracy")
    ax.plot(conf[full], acc[full], "o", color="C1", markersize=4, label="mean confidence")
    ax.plot([0, 1], [0, 1], "--", color="0.4", linewidth=1, label="perfect calibration")
    share = ax.twinx()
    total = max(count.sum(), 1.0)
    share.step(edges, np.r_[count / total, 0.0], where="post", color="0.6", linewidth=1)
    share.set_ylim(0, 1)
    share.set_ylabel("Share of clips", color="0.5")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("Top-class probability")
    ax.set_ylabel("Accuracy")
    title = "Reliability"
    if ece is not None:
        title += f" (ECE {ece:.3f})"
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return ax
