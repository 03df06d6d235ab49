"""The demo's two pictures: waveform and log-mel spectrogram, as base64 PNGs."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np

from soundclass.config import FeatureConfig

__all__ = ["render_pictures"]


def _figure_axes(*, figsize: tuple[float, float], rect: tuple[float, float, float, float]) -> Any:
    """Axes at a fixed place on a new Agg figure (no layout engine: twice as fast to draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig.add_axes(rect)


def _png_base64(fig: Any, *, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def render_pictures(y: np.ndarray, *, sr: int, feature: FeatureConfig) -> tuple[str, str]:
    """Base64 PNGs of the waveform and of the log-mel spectrogram of ``y``.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)]
        Mono signal at ``sr``.
    sr : int
        Its sample rate.
    feature : FeatureConfig
        The model's feature settings (``n_fft``, ``hop_length``, ``n_mels``, ...)
        used for the mel picture.

    Returns
    -------
    waveform_png, mel_png : str
        Base64-encoded PNG files.  Both pictures have the same horizontal
        extent, so their time axes line up on the page.
    """
    from soundclass.dsp.features import melspectrogram, power_to_db
    from soundclass.plots import plot_mel, plot_waveform

    f = feature
    ax = _figure_axes(figsize=(8.0, 2.2), rect=(0.1, 0.2, 0.8, 0.68))
    plot_waveform(y, sr=sr, ax=ax)
    ax.set_title("Waveform", loc="left")
    waveform = _png_base64(ax.figure)

    S = melspectrogram(
        y=y, sr=sr, n_fft=f.n_fft, hop_length=f.hop_length, win_length=f.win_length,
        n_mels=f.n_mels, fmin=f.fmin, fmax=f.fmax, htk=f.htk, norm=f.norm,
    )  # (n_mels, t)
    S_db = power_to_db(S, ref=np.max, top_db=80.0)
    ax = _figure_axes(figsize=(8.0, 3.0), rect=(0.1, 0.15, 0.8, 0.76))
    mesh = plot_mel(
        S_db, sr=sr, hop_length=f.hop_length, fmin=f.fmin, fmax=f.fmax, htk=f.htk, ax=ax, colorbar=False
    )
    ax.figure.colorbar(mesh, cax=ax.figure.add_axes((0.915, 0.15, 0.015, 0.76)), format="%+2.0f dB")
    ax.set_title(f"Mel spectrogram ({f.n_mels} bands, dB re max)", loc="left")
    return waveform, _png_base64(ax.figure)
