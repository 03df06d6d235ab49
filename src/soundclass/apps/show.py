"""The 4-panel picture of one audio file: decode, compute features, draw, write PNG.

This is an application of the stages below it (:mod:`soundclass.audio`,
:mod:`soundclass.dsp.features`, :mod:`soundclass.plots`); ``soundclass show``
calls :func:`show_file`.
"""

from __future__ import annotations

import itertools
import os

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from soundclass import audio
from soundclass.dsp import features
from soundclass.errors import ParameterError, check_positive, check_positive_int
from soundclass.inference.timeline import iter_windows, score_windows
from soundclass.inference.windows import default_window_seconds, window_proba_fn
from soundclass.plots import (
    DB_FORMAT,
    plot_mel,
    plot_mfcc,
    plot_spectrogram,
    plot_waveform,
    save_figure,
)
from soundclass.plots.timeline import plot_timeline

__all__ = ["show_file", "show_timeline"]


def _file_title(path: str, head, *, sr_used: float, offset: float, n: int, silent: bool,
                padded_to: int | None) -> str:
    parts = [f"{head.sr} Hz", f"{head.duration:.2f} s",
             f"{head.channels} channel{'s' if head.channels != 1 else ''}",
             f"{head.format}/{head.subtype}"]
    title = f"{os.path.basename(path)}  -  " + ", ".join(parts)
    notes = []
    if offset > 0 or n < head.frames * sr_used / head.sr - 1:
        notes.append(f"excerpt {offset:.2f}-{offset + n / sr_used:.2f} s")
    if sr_used != head.sr:
        notes.append(f"analysed at {sr_used:g} Hz")
    if silent:
        notes.append("SILENT (RMS <= -80 dBFS)")
    if padded_to is not None:
        notes.append(f"shorter than n_fft: zero-padded to {padded_to} samples for analysis")
    return title + ("\n" + "; ".join(notes) if notes else "")


def show_file(
    path: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    sr: float | None = None,
    n_fft: int = 2048,
    hop_length: int = 512,
    n_mels: int = 128,
    n_mfcc: int = 20,
    offset: float = 0.0,
    duration: float | None = None,
    top_db: float = 80.0,
    max_seconds: float = 600.0,
    dpi: int = 110,
) -> str:
    """Draw the 4-panel picture of one clip and write it as PNG.

    Panels: waveform (every channel), log-frequency power spectrogram in dB
    with a colour bar, log-mel spectrogram on a mel axis, MFCCs.  The title
    gives the file name, native sample rate, duration, channels and encoding.
    Spectrograms are in dB relative to the clip's maximum (``top_db`` range);
    a silent clip is drawn relative to 1.0 so it shows as dark, not as noise.

    Parameters
    ----------
    path : str or os.PathLike
        Any file :func:`soundclass.audio.load` reads.
    out_png : str or os.PathLike
        Where to write the picture (folders are created).
    sr : float, optional
        Analysis sample rate; ``None`` keeps the file's.
    n_fft, hop_length, n_mels, n_mfcc
        Feature settings (librosa's meaning).
    offset, duration : float
        Part of the file to show, in seconds.
    top_db : float
        Dynamic range of the spectrogram colours.
    max_seconds : float
        Without ``duration``, longer files are shown only up to this many
        seconds after ``offset`` (the title says so): a picture of hours of
        audio would be unreadable and costly.
    dpi : int
        Resolution of the PNG (the figure is 11 x 11 inches).

    Returns
    -------
    str
        ``out_png``.

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded.
    ParameterError
        Invalid settings.
    """
    for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels),
                        ("n_mfcc", n_mfcc)):
        check_positive_int(name, value)
    if n_mfcc > n_mels:
        raise ParameterError(f"n_mfcc={n_mfcc} must be <= n_mels={n_mels}")
    check_positive("top_db", top_db)
    check_positive("max_seconds", max_seconds)
    path = os.fspath(path)
    head = audio.info(path)
    if duration is None and head.duration - offset > max_seconds:
        duration = max_seconds
    y, sr_used = audio.load(path, sr=sr, mono=False, offset=offset, duration=duration)
    mono = audio.to_mono(y)
    silent = audio.is_silent(y)
    n = mono.shape[-1]
    padded_to = None
    if n < n_fft:
        mono = np.pad(mono, (0, n_fft - n))
        padded_to = n_fft

    S = features.spectrogram(mono, n_fft=n_fft, hop_length=hop_length, power=2.0)
    mel = features.melspectrogram(S=S, sr=sr_used, n_mels=n_mels)
    S_db = features.power_to_db(S, ref=1.0 if silent else float(np.max(S)), top_db=top_db)
    mel_db = features.power_to_db(mel, ref=1.0 if silent else float(np.max(mel)), top_db=top_db)
    mfccs = features.mfcc(S=features.power_to_db(mel, top_db=top_db), n_mfcc=n_mfcc)

    fig = Figure(figsize=(11.0, 11.0), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(4, 2, width_ratios=(60, 1), height_ratios=(0.8, 1, 1, 0.8))
    axes = [fig.add_subplot(grid[i, 0]) for i in range(4)]
    caxes = [fig.add_subplot(grid[i, 1]) for i in range(4)]
    for ax in axes[1:]:
        ax.sharex(axes[0])
    caxes[0].set_axis_off()
    db_range = {"vmin": -top_db, "vmax": 0.0}  # dB re the clip's maximum
    plot_waveform(y, sr=sr_used, ax=axes[0], offset=offset)
    axes[0].set_title("Waveform", loc="left", fontsize="medium")
    mesh = plot_spectrogram(S_db, sr=sr_used, hop_length=hop_length, ax=axes[1], y_axis="log",
                            colorbar=False, offset=offset, **db_range)
    fig.colorbar(mesh, cax=caxes[1], format=DB_FORMAT)
    axes[1].set_title(f"Power spectrogram (n_fft={n_fft}, hop_length={hop_length})",
                      loc="left", fontsize="medium")
    mesh = plot_mel(mel_db, sr=sr_used, hop_length=hop_length, ax=axes[2], colorbar=False,
                    offset=offset, **db_range)
    fig.colorbar(mesh, cax=caxes[2], format=DB_FORMAT)
    axes[2].set_title(f"Mel spectrogram (n_mels={n_mels})", loc="left", fontsize="medium")
    mesh = plot_mfcc(mfccs, sr=sr_used, hop_length=hop_length, ax=axes[3], colorbar=False,
                     offset=offset)
    fig.colorbar(mesh, cax=caxes[3])
    axes[3].set_title(f"MFCC (n_mfcc={n_mfcc})", loc="left", fontsize="medium")
    axes[0].set_xlim(offset, offset + max(n, 1) / sr_used)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    fig.suptitle(_file_title(path, head, sr_used=sr_used, offset=offset, n=n, silent=silent,
                             padded_to=padded_to))
    return save_figure(fig, out_png, dpi=dpi)


def show_timeline(
    checkpoint: str | os.PathLike | object,
    path: str | os.PathLike,
    out_png: str | os.PathLike,
    *,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    n_fft: int = 1024,
    hop_length: int = 256,
    n_mels: int = 64,
    top_db: float = 80.0,
    max_seconds: float = 600.0,
    tta: int = 1,
    dpi: int = 110,
) -> str:
    """Draw a long recording's mel spectrogram with the model's class probabilities over time under it.

    The file is scored window by window as ``soundclass predict --windows``
    does (:mod:`soundclass.inference.windows`); the lower panel is
    :func:`soundclass.plots.plot_timeline` (one line per class, each window's
    top class as a strip), sharing the time axis with the spectrogram.

    Parameters
    ----------
    checkpoint : Checkpoint or path
        A loaded checkpoint, a checkpoint folder or a training run folder.
    path : str or os.PathLike
        The recording (any file soundfile reads).
    out_png : str or os.PathLike
    window_seconds, hop_seconds : float, optional
        Default: the model's training window, no overlap.
    n_fft, hop_length, n_mels, top_db
        Settings of the spectrogram picture (at the model's sample rate).
    max_seconds : float
        Only the first ``max_seconds`` are drawn and scored (the title says so).
    tta, dpi : int

    Returns
    -------
    str
        ``out_png``.

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded.
    ParameterError
        Invalid settings, or no window to score.
    """
    from soundclass.checkpoint.format import as_checkpoint

    for name, value in (("n_fft", n_fft), ("hop_length", hop_length), ("n_mels", n_mels)):
        check_positive_int(name, value)
    check_positive("max_seconds", max_seconds)
    ckpt = as_checkpoint(checkpoint)
    path = os.fspath(path)
    head = audio.info(path)
    sr = int(ckpt.feature.sr)
    window = default_window_seconds(ckpt) if window_seconds is None else float(window_seconds)
    windows = itertools.takewhile(lambda w: w.start < max_seconds,
                                  iter_windows(path, sr=sr, window_seconds=window, hop_seconds=hop_seconds))
    starts, ends, proba = score_windows(windows, window_proba_fn(ckpt, tta=tta))
    if starts.size == 0:
        raise ParameterError(f"{path}: no window to score (empty file?)")
    shown = min(float(ends[-1]), max_seconds)
    y, _ = audio.load(path, sr=sr, duration=shown)
    mono = audio.to_mono(y)
    if mono.size < n_fft:
        mono = np.pad(mono, (0, n_fft - mono.size))
    mel = features.melspectrogram(y=mono, sr=sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    silent = audio.is_silent(y)
    mel_db = features.power_to_db(mel, ref=1.0 if silent else float(np.max(mel)), top_db=top_db)

    fig = Figure(figsize=(12.0, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=(60, 1), height_ratios=(1, 1))
    ax_mel, ax_tl = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0])
    cax = fig.add_subplot(grid[0, 1])
    fig.add_subplot(grid[1, 1]).set_axis_off()
    ax_tl.sharex(ax_mel)
    mesh = plot_mel(mel_db, sr=sr, hop_length=hop_length, ax=ax_mel, colorbar=False, vmin=-top_db, vmax=0.0)
    fig.colorbar(mesh, cax=cax, format=DB_FORMAT)
    ax_mel.set_title(f"Mel spectrogram (n_mels={n_mels})", loc="left", fontsize="medium")
    ax_mel.set_xlabel("")
    plot_timeline(0.5 * (starts + ends), proba, ckpt.classes, ax=ax_tl)
    ax_tl.set_xlim(float(starts[0]), shown)
    hop = window if hop_seconds is None else float(hop_seconds)
    title = (f"{os.path.basename(path)}  -  {head.duration:.1f} s; {ckpt.model_name}, "
             f"{starts.size} windows of {window:g} s every {hop:g} s")
    if head.duration > max_seconds:
        title += f"\nfirst {max_seconds:g} s shown"
    fig.suptitle(title)
    return save_figure(fig, out_png, dpi=dpi)
