"""Pictures of a training run: learning curves with the best epoch, confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from soundclass.errors import ParameterError
from soundclass.plots.figure import add_colorbar

__all__ = ["plot_confusion", "plot_history"]


_NOT_CURVES = frozenset({"lr", "epoch", "epochs", "time", "seconds"})


def _has_finite(values: Sequence[float]) -> bool:
    return bool(np.isfinite(np.asarray(values, dtype=np.float64)).any())


def _best(history: Mapping[str, Sequence[float]], monitor: str | None) -> tuple[str, int] | None:
    """``(key, 0-based epoch)`` of the best monitored value, or None if nothing finite."""
    if monitor is not None and monitor not in history:
        raise ParameterError(f"monitor={monitor!r} is not in history ({', '.join(history)})")
    if monitor is None:
        order = (["val_loss"] + [k for k in history if k.startswith("val_")]
                 + [k for k in history if "loss" in k])
        monitor = next((k for k in order if k in history and _has_finite(history[k])), None)
    if monitor is None or not _has_finite(history[monitor]):
        return None
    v = np.asarray(history[monitor], dtype=np.float64)
    v = np.where(np.isfinite(v), v, np.nan)
    idx = int(np.nanargmin(v) if "loss" in monitor else np.nanargmax(v))
    return monitor, idx


def plot_history(
    history: Mapping[str, Sequence[float]],
    *,
    ax: Axes,
    monitor: str | None = None,
) -> Axes:
    """Loss curves (left axis) and metrics (right axis) per epoch, best epoch marked.

    Parameters
    ----------
    history : dict of {name: list of float}
        One value per epoch, e.g. ``train_loss``, ``val_loss``, ``val_accuracy``,
        ``val_macro_f1``.  Keys containing ``loss`` go on the left axis, the
        other metrics on a twin right axis; ``epoch`` (if given) numbers the x
        axis, ``lr``/``time``/``seconds`` are not drawn, nor are series
        without a finite value (e.g. ``val_*`` of a run without validation).
    monitor : str, optional
        Key deciding the best epoch (minimum if it contains ``loss``, else
        maximum).  Default ``val_loss``, else the first ``val_*`` key, else a
        loss, whichever has finite values first.

    Returns
    -------
    Axes
        The loss axes; the metric axes, if any, is its twin.
    """
    if not history or not any(len(v) for v in history.values()):
        raise ParameterError("history is empty: nothing to draw")
    curves = [k for k in history
              if k not in _NOT_CURVES and len(history[k]) and _has_finite(history[k])]
    losses = [k for k in curves if "loss" in k]
    metrics = [k for k in curves if "loss" not in k]
    n_epochs = max((len(history[k]) for k in curves), default=0)
    epochs = history.get("epoch")
    if epochs is not None and len(epochs) == n_epochs and n_epochs:
        x_all = np.asarray(epochs, dtype=np.float64)
    else:
        x_all = np.arange(1, n_epochs + 1, dtype=np.float64)
    handles = []
    ax2 = ax.twinx() if losses and metrics else ax
    for i, k in enumerate(losses + metrics):
        target = ax if k in losses else ax2
        (line,) = target.plot(x_all[: len(history[k])], history[k],
                              "--" if k.startswith("train") else "-", marker=".",
                              color=f"C{i % 10}", label=k)
        handles.append(line)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss" if losses else "Metric")
    if ax2 is not ax:
        ax2.set_ylabel("Metric")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if n_epochs:
        ax.set_xlim(x_all[0] - 0.5, x_all[-1] + 0.5)
    best = _best(history, monitor)
    if best is not None:
        key, idx = best
        value = float(history[key][idx])
        x_best = float(x_all[idx]) if idx < x_all.size else idx + 1.0
        ax.axvline(x_best, color="0.4", linestyle=":", linewidth=1)
        line_of = {h.get_label(): h for h in handles}
        target = line_of[key].axes if key in line_of else ax
        target.plot([x_best], [value], marker="*", markersize=12, color="gold",
                    markeredgecolor="black", zorder=5, linestyle="none")
        ax.set_title(f"Best epoch {x_best:g}: {key} = {value:.4g}")
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                  ncols=min(len(handles), 4), fontsize="small", frameon=False)
    ax.grid(alpha=0.3)
    return ax


def plot_confusion(
    cm: np.ndarray,
    *,
    classes: Sequence[str],
    ax: Axes,
    normalize: bool = True,
    cmap: str = "Blues",
    colorbar: bool = False,
):
    """Confusion matrix: counts written in the cells, colours row-normalised.

    Parameters
    ----------
    cm : np.ndarray [shape=(n_classes, n_classes)]
        Counts, rows = true class, columns = predicted class.
    classes : sequence of str [shape=(n_classes,)]
    normalize : bool
        Colour by the fraction of each true class (recall per cell); False
        colours by raw counts.

    Returns
    -------
    matplotlib.image.AxesImage
    """
    cm = np.asarray(cm)
    k = len(classes)
    if k == 0:
        raise ParameterError("classes is empty: no confusion matrix to draw")
    if cm.ndim != 2 or cm.shape != (k, k):
        raise ParameterError(f"cm must have shape ({k}, {k}) for {k} classes; got {cm.shape}")
    cm = np.nan_to_num(cm.astype(np.float64))
    if normalize:
        rows = cm.sum(axis=1, keepdims=True)
        colours = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        vmax = 1.0
    else:
        colours = cm
        vmax = max(float(cm.max()), 1.0)
    image = ax.imshow(colours, cmap=cmap, vmin=0.0, vmax=vmax, interpolation="nearest",
                      aspect="auto" if k > 1 else "equal")
    fontsize = 9 if k <= 10 else max(5.0, 9 - 0.25 * (k - 10))
    for i in range(k):
        for j in range(k):
            if cm[i, j] == 0:
                continue
            value = cm[i, j]
            text = f"{int(value)}" if float(value).is_integer() else f"{value:.2g}"
            dark = colours[i, j] / vmax > 0.55
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else "black")
    labels = [str(c) for c in classes]
    tick_size = "small" if k > 10 else "medium"
    ax.set_xticks(range(k), labels, rotation=90 if k > 6 else 0, fontsize=tick_size)
    ax.set_yticks(range(k), labels, fontsize=tick_size)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    if colorbar:
        add_colorbar(ax, image, fmt=None, label="fraction of true class" if normalize else "clips")
    return image
