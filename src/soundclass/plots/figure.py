"""Figure plumbing: Agg-bound figures, atomic PNG writing, colour bars and shared styles.

Figures made here are plain :class:`matplotlib.figure.Figure` objects bound
to the Agg canvas: they never touch pyplot's global state or the user's
backend, so they cannot leak and they work on headless machines.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from soundclass.util.atomic import atomic_open

__all__ = ["DB_FORMAT", "MFCC_CMAP", "SPEC_CMAP", "add_colorbar", "new_figure", "save_figure"]

SPEC_CMAP = "magma"
MFCC_CMAP = "coolwarm"
DB_FORMAT = "%+2.0f dB"


def new_figure(*, figsize: tuple[float, float] = (8.0, 4.5), nrows: int = 1, ncols: int = 1,
               **kwargs) -> tuple[Figure, np.ndarray | Axes]:
    """A figure on the Agg canvas with its axes (constrained layout).

    Parameters
    ----------
    figsize : (width, height) in inches
    nrows, ncols : int
        Grid of axes, as in ``plt.subplots``.
    **kwargs
        Passed to :meth:`Figure.subplots` (``width_ratios``, ``sharex``, ...).

    Returns
    -------
    fig : matplotlib.figure.Figure
        Not registered with pyplot: nothing to close, nothing leaks.
    axes : Axes or ndarray of Axes
    """
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=True, **kwargs)
    return fig, axes


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 110) -> str:
    """Write ``fig`` to ``path`` (PNG unless the suffix says otherwise); returns the path."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fmt = path.suffix[1:].lower() or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=dpi, format=fmt)
    return str(path)


def add_colorbar(ax: Axes, mappable, *, fmt: str | None, label: str | None = None):
    """The colour bar every picture uses, beside ``ax`` (tick format ``fmt``, optional ``label``)."""
    cbar = ax.figure.colorbar(mappable, ax=ax, format=fmt, pad=0.01, fraction=0.05)
    if label:
        cbar.set_label(label)
    return cbar
