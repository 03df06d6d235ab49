"""Class probabilities over time for a long recording (one line per class).

Takes window times and probabilities (e.g. from
:func:`soundclass.inference.timeline.score_windows`) and draws on a given
axes, typically one sharing its x axis with a spectrogram above; never calls
``show()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes

from soundclass.errors import ParameterError, check_positive_int

__all__ = ["plot_timeline"]


def plot_timeline(
    times: Sequence[float],
    proba: np.ndarray,
    classes: Sequence[str],
    *,
    ax: Axes,
    threshold: float | None = None,
    max_classes: int = 10,
) -> Axes:
    """Probability of each class against time, the top class of each window shaded.

    Parameters
    ----------
    times : sequence of float [shape=(n,)]
        Window centres in seconds (increasing).
    proba : np.ndarray [shape=(n, n_classes)]
        Class probabilities per window.
    classes : sequence of str [shape=(n_classes,)]
    ax : matplotlib.axes.Axes
    threshold : float, optional
        An "unknown" threshold drawn as a dashed line.
    max_classes : int
        Only the classes with the highest peak probability are drawn (legend
        stays readable); the rest are summarised in the title.

    Returns
    -------
    Axes
        ``ax``.
    """
    t = np.asarray(times, dtype=np.float64)
    p = np.asarray(proba, dtype=np.float64)
    classes = [str(c) for c in classes]
    if p.ndim != 2 or p.shape[0] != t.size or p.shape[1] != len(classes):
        raise ParameterError(
            f"proba has shape {p.shape}; expected ({t.size}, {len(classes)}) for the times and classes"
        )
    if t.size == 0:
        raise ParameterError("no windows: nothing to draw")
    max_classes = check_positive_int("max_classes", max_classes)
    shown = np.argsort(-p.max(axis=0), kind="stable")[:max_classes]
    top = p.argmax(axis=1)
    edges = np.r_[t[0], 0.5 * (t[1:] + t[:-1]), t[-1]] if t.size > 1 else np.array([t[0] - 0.5, t[0] + 0.5])
    for rank, c in enumerate(shown):
        colour = f"C{rank % 10}"
        ax.plot(t, p[:, c], color=colour, linewidth=1.2, label=classes[c])
        mask = top == c
        for i in np.nonzero(mask)[0]:
            ax.axvspan(edges[i], edges[i + 1], ymin=0.0, ymax=0.04, color=colour, linewidth=0)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1, label=f"unknown below {threshold:.2f}")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("Time (s)")
    ax.set_ylabel("Probability")
    hidden = len(classes) - len(shown)
    ax.set_title("Class probabilities over time" + (f" ({hidden} more classes not drawn)" if hidden else ""))
    ax.legend(loc="upper right", fontsize="small", ncols=min(len(shown) + (threshold is not None), 4), frameon=False)
    ax.grid(alpha=0.3)
    return ax
