"""Pictures of a dataset: files per class, clip durations."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from soundclass.errors import ParameterError

__all__ = ["plot_class_counts", "plot_durations"]


def _imbalance(counts: Mapping[str, int]) -> float:
    values = [int(v) for v in counts.values()]
    lo = min(values)
    return math.inf if lo == 0 else max(values) / lo


def plot_class_counts(
    counts: Mapping[str, int],
    *,
    ax: Axes,
    bad: Mapping[str, int] | None = None,
    color: str = "tab:blue",
) -> Axes:
    """Horizontal bars of clips per class, largest on top, each annotated.

    The title gives the number of clips and classes and the imbalance ratio
    (largest class / smallest class).

    Parameters
    ----------
    counts : dict of {class name: count}
    ax : Axes
    bad : dict of {class name: count}, optional
        Unreadable clips among ``counts``, drawn in red at the end of each bar.

    Returns
    -------
    Axes
    """
    if not counts:
        raise ParameterError("counts is empty: no classes to draw")
    if any(int(v) < 0 for v in counts.values()):
        raise ParameterError(f"counts must be non-negative; got {dict(counts)}")
    order = sorted(counts, key=lambda k: (-int(counts[k]), str(k)))[::-1]  # largest last = top
    values = [int(counts[k]) for k in order]
    n_bad = [min(int((bad or {}).get(k, 0)), v) for k, v in zip(order, values, strict=True)]
    ax.barh(range(len(order)), [v - b for v, b in zip(values, n_bad, strict=True)], color=color,
            height=0.7, label="readable")
    bars = ax.barh(range(len(order)), n_bad, left=[v - b for v, b in zip(values, n_bad, strict=True)],
                   color="tab:red", height=0.7, label="unreadable")
    ax.bar_label(bars, labels=[f"{v} ({b} bad)" if b else str(v)
                               for v, b in zip(values, n_bad, strict=True)],
                 padding=3, fontsize="small")
    if any(n_bad):
        ax.legend(loc="lower right", fontsize="small")
    ax.set_yticks(range(len(order)), [str(k) for k in order],
                  fontsize="small" if len(order) > 12 else "medium")
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlim(0, max(max(values), 1) * (1.25 if any(n_bad) else 1.15))
    ax.set_xlabel("Clips")
    ratio = _imbalance(counts)
    ratio_text = "inf (an empty class)" if math.isinf(ratio) else f"{ratio:.1f}:1"
    ax.set_title(f"{sum(values)} clips in {len(order)} classes - imbalance {ratio_text}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax


def plot_durations(
    durations: Sequence[float] | np.ndarray,
    *,
    ax: Axes,
    by_class: Sequence[str] | None = None,
    color: str = "tab:blue",
) -> Axes:
    """Distribution of clip durations in seconds.

    Without ``by_class``: a histogram with the median marked.  With
    ``by_class`` (one label per duration): one horizontal box per class, which
    stays readable for 20 classes.  Non-finite durations (unreadable clips)
    are skipped.

    Parameters
    ----------
    durations : array-like [shape=(n,)]
        Seconds.
    by_class : sequence of str [shape=(n,)], optional

    Returns
    -------
    Axes
    """
    d = np.asarray(durations, dtype=np.float64).ravel()
    if by_class is not None and len(by_class) != d.size:
        raise ParameterError(f"by_class has {len(by_class)} labels for {d.size} durations")
    keep = np.isfinite(d)
    ax.set_xlabel("Duration (s)")
    if not keep.any():
        ax.text(0.5, 0.5, "no readable clips", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("Durations")
        return ax
    d_ok = d[keep]
    stats = (f"n={d_ok.size}, median {np.median(d_ok):.2f} s, "
             f"range {d_ok.min():.2f}-{d_ok.max():.2f} s")
    if by_class is None:
        edges = np.histogram_bin_edges(d_ok, bins="auto")
        if edges.size > 61:
            edges = np.histogram_bin_edges(d_ok, bins=60)
        ax.hist(d_ok, bins=edges, color=color, alpha=0.85)
        ax.axvline(float(np.median(d_ok)), color="tab:red", linestyle="--", linewidth=1,
                   label="median")
        ax.legend(loc="upper right", fontsize="small")
        ax.set_ylabel("Clips")
    else:
        labels = np.asarray([str(c) for c in by_class], dtype=object)[keep]
        classes = sorted(set(labels.tolist()))[::-1]  # alphabetical from the top
        data = [d_ok[labels == c] for c in classes]
        kw = {"widths": 0.6, "showfliers": True, "patch_artist": True,
              "flierprops": {"markersize": 2, "alpha": 0.5},
              "medianprops": {"color": "tab:red"},
              "boxprops": {"facecolor": "tab:blue", "alpha": 0.35}}
        try:
            ax.boxplot(data, orientation="horizontal", **kw)
        except TypeError:  # matplotlib < 3.10
            ax.boxplot(data, vert=False, **kw)
        ax.set_yticks(range(1, len(classes) + 1),
                      [f"{c} ({len(x)})" for c, x in zip(classes, data, strict=True)],
                      fontsize="small" if len(classes) > 12 else "medium")
    ax.set_title(f"Durations: {stats}")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    return ax
