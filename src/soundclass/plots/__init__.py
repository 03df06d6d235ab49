"""Pictures of clips, datasets and training runs (matplotlib, no GUI).

Every ``plot_*`` function draws on an ``ax`` it is given and returns the main
artist (spectrogram-like pictures) or the ``ax``; none calls ``show()``.
Figures that soundclass itself creates (:func:`new_figure`, the scan and run
reports, :func:`soundclass.apps.show.show_file`) are plain
:class:`matplotlib.figure.Figure` objects bound to the Agg canvas: they never
touch pyplot's global state or the user's backend, so they cannot leak and
they work on headless machines.

Modules: :mod:`~soundclass.plots.figure` (figures, PNG writing, styles),
:mod:`~soundclass.plots.axes` (axis maths), :mod:`~soundclass.plots.signal`
(waveform, spectrograms, MFCC), :mod:`~soundclass.plots.dataset` (class
counts, durations), :mod:`~soundclass.plots.training` (learning curves,
confusion matrix).
"""

from soundclass.plots.axes import Y_AXES, hz_tick_label
from soundclass.plots.dataset import plot_class_counts, plot_durations
from soundclass.plots.figure import DB_FORMAT, MFCC_CMAP, SPEC_CMAP, new_figure, save_figure
from soundclass.plots.signal import plot_mel, plot_mfcc, plot_spectrogram, plot_waveform
from soundclass.plots.training import plot_confusion, plot_history

__all__ = [
    "new_figure",
    "save_figure",
    "plot_waveform",
    "plot_spectrogram",
    "plot_mel",
    "plot_mfcc",
    "plot_class_counts",
    "plot_durations",
    "plot_history",
    "plot_confusion",
    "hz_tick_label",
    "DB_FORMAT",
    "MFCC_CMAP",
    "SPEC_CMAP",
    "Y_AXES",
]
