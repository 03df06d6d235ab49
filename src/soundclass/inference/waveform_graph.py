"""The torch module the ONNX waveform graph is traced from: front end, standardisation, model, softmax.

:class:`WaveformClassifier` is what :mod:`soundclass.inference.export` writes.
Its parts depend on the checkpoint's feature kind, so every registered model
exports (:func:`waveform_frontend`):

- ``melspectrogram``, ``logmel``, ``mfcc`` (``seed-*``, the CNNs,
  ``logmel-logreg``, ``mfcc-svm``): :class:`~soundclass.dsp.frontend.FeatureFrontend`,
  equal to ``compute_feature``;
- ``aisfx`` (``aisfx-probe``): :class:`~soundclass.models.aisfx.AisfxEmbedding`,
  peak normalisation, the aiSFX log-mel, blocks of 100 frames (hop 50, short
  clips zero-padded to one block) and the pretrained network, whose weights
  become part of the graph;
- ``aisfx-logmel`` (``aisfx``, the fine-tuned network):
  :class:`~soundclass.dsp.aisfx_frontend.AisfxLogmel`; the model cuts its own
  blocks;
- ``whisper`` (``whisper-probe``): :class:`~soundclass.models.whisper.WhisperEmbedding`,
  the Whisper log-mel, equal 30 s windows and the pretrained encoder (its
  weights become part of the graph); ``whisper-logmel`` (``whisper``, the
  fine-tuned encoder): :class:`~soundclass.models.whisper.WhisperLogmel`;
- ``fusion`` (``fusion-probe``): :class:`~soundclass.models.fusion.FusionEmbedding`,
  both networks, Whisper's input resampled to 16 kHz inside the graph.

Pieces (:class:`WindowedLogits`): the graph of a sequence model scores the
pieces the torch predictor scores (:func:`soundclass.inference.predictor.plan_pieces`,
``tta=1``) and averages their logits: windows of ``clip_frames`` frames over
a clip at least one window long (:func:`~soundclass.inference.predictor.window_starts`),
a shorter clip whole, and a piece shorter than the model's ``min_frames``
padded to it, centred, with each feature row's minimum.  ``clip_frames`` is
the checkpoint's (``window_frames`` in the ONNX metadata); a model without one
and with ``min_frames`` 1 (the classical models, ``aisfx-probe``) sees the
whole clip.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.dsp.aisfx import BLOCK_FRAMES, BLOCK_HOP
from soundclass.dsp.aisfx_frontend import AisfxLogmel
from soundclass.dsp.frontend import DELTA_WIDTH, FeatureFrontend
from soundclass.errors import ParameterError, check_positive_int
from soundclass.models.aisfx import AisfxEmbedding
from soundclass.models.fusion import FusionEmbedding
from soundclass.models.whisper import (
    WHISPER_HOP_LENGTH,
    WHISPER_SR,
    WINDOW_FRAMES,
    WhisperEmbedding,
    WhisperLogmel,
)

__all__ = [
    "WaveformClassifier",
    "WindowedLogits",
    "waveform_frontend",
    "min_samples_for",
    "probe_frames",
]


def min_samples_for(feature: FeatureConfig, *, min_frames: int = 1) -> int:
    """Fewest samples giving at least ``min_frames`` frames (and 9 frames with deltas).

    Parameters
    ----------
    feature : FeatureConfig
    min_frames : int
        Frames wanted (the graph pads waveforms only for the deltas; a
        model's ``min_frames`` is met by :class:`WindowedLogits`).

    Returns
    -------
    int >= 1
    """
    frames = max(int(min_frames), DELTA_WIDTH if feature.deltas else 1, 1)
    if feature.center:
        # frames = 1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length
        n = feature.n_fft - 2 * (feature.n_fft // 2) + (frames - 1) * feature.hop_length
        if feature.pad_mode == "reflect":
            n = max(n, feature.n_fft // 2 + 1)
    else:
        n = feature.n_fft + (frames - 1) * feature.hop_length
    return max(n, 1)


def waveform_frontend(feature: FeatureConfig) -> nn.Module:
    """The torch module computing ``compute_feature(y, feature)`` from waveforms ``(B, n)``.

    Raises
    ------
    SoundclassError
        ``kind='aisfx'`` (``'whisper'``, ``'fusion'``) without the weights installed (the message
        gives the install command).
    """
    if feature.kind == "aisfx":
        return AisfxEmbedding()
    if feature.kind == "aisfx-logmel":
        return AisfxLogmel()
    if feature.kind == "whisper":
        return WhisperEmbedding()
    if feature.kind == "whisper-logmel":
        return WhisperLogmel()
    if feature.kind == "fusion":
        return FusionEmbedding()
    return FeatureFrontend(feature)


def probe_frames(feature: FeatureConfig, *, clip_frames: int | None = None) -> int:
    """Frames of a check clip that takes every path of the graph, 0: none needed.

    Two windows of ``clip_frames`` (overlapping: the shortest clip that
    averages windows), four aiSFX blocks for the aiSFX kinds (and ``fusion``),
    two overlapping 30 s encoder windows (45 s) for the Whisper kinds and ``fusion``.
    """
    frames = 0
    if clip_frames is not None:
        frames = int(clip_frames) + int(clip_frames) // 2 + 7
    if feature.kind in ("aisfx", "aisfx-logmel", "fusion"):
        frames = max(frames, 2 * BLOCK_FRAMES + BLOCK_HOP + 7)  # 4 blocks
    if feature.kind in ("whisper", "whisper-logmel", "fusion"):
        seconds = 1.5 * WINDOW_FRAMES * WHISPER_HOP_LENGTH / WHISPER_SR + 0.1  # 2 windows
        frames = max(frames, int(np.ceil(seconds * feature.sr / feature.hop_length)))
    return frames


class WindowedLogits(nn.Module):
    """Mean logits over the torch predictor's pieces of a clip (``tta=1``), inside the graph.

    For a clip of ``T`` frames, the window is ``P = max(min(T, clip_frames),
    min_frames)`` frames (``clip_frames=None``: ``max(T, min_frames)``):

    - ``T >= P``: ``ceil(T / P)`` windows whose starts are
      ``rint(linspace(0, T - P, count))``, computed in float64 as
      :func:`soundclass.inference.predictor.window_starts` does (one window,
      the clip itself, when ``T < clip_frames``);
    - ``T < P`` (fewer frames than the model takes): one window starting at
      ``-((P - T) // 2)``, its frames outside the clip set to each row's
      minimum over the clip, as the predictor pads.

    Parameters
    ----------
    model : torch.nn.Module
        Logits model over ``(B, n_features, T)``; its ``min_frames`` attribute
        (default 1) is the shortest input it takes.
    clip_frames : int or None
        Window length (the checkpoint's training window); ``None``: no windows.
    pad_to_window : bool
        Pad a clip shorter than ``clip_frames`` to one centred window instead
        of scoring it at its own length (a model trained on batches padded to
        the window: :func:`soundclass.inference.predictor.pads_short_clips`).

    Shapes
    ------
    ``(B, n_features, T)`` -> ``(B, n_classes)``.
    """

    def __init__(self, model: nn.Module, clip_frames: int | None, *, pad_to_window: bool = False):
        super().__init__()
        self.model = model
        self.clip_frames = None if clip_frames is None else check_positive_int("clip_frames", clip_frames)
        self.min_frames = max(int(getattr(model, "min_frames", 1)), 1)
        self.pad_to_window = bool(pad_to_window) and self.clip_frames is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, rows = x.shape[0], x.shape[1]
        n = torch.as_tensor(x.shape[2])  # a traced 0-d tensor while exporting
        if self.pad_to_window:
            length = torch.as_tensor(max(self.clip_frames, self.min_frames))
        else:
            length = n if self.clip_frames is None else torch.clamp(n, max=self.clip_frames)
            length = torch.clamp(length, min=self.min_frames)
        count = (n + length - 1) // length  # >= 1; 1 when the clip is at most one window
        slack = (n - length).double()  # < 0: one window, padded
        i = torch.arange(count)
        # numpy.linspace: i * (slack / (count - 1)), the last start exactly slack
        starts = torch.round(i.double() * (slack / torch.clamp(count - 1, min=1).double()))
        starts = torch.where(i == count - 1, slack, starts).long()
        starts = torch.where(starts < 0, -(torch.clamp(length - n, min=0) // 2), starts)  # centred
        idx = starts[:, None] + torch.arange(length)[None, :]  # (count, length)
        inside = (idx >= 0) & (idx < n)
        idx = torch.minimum(torch.clamp(idx, min=0), n - 1).reshape(-1)  # (count * length,)
        windows = torch.index_select(x, 2, idx).reshape(batch, rows, count, length)
        floor = x.amin(dim=2, keepdim=True).unsqueeze(-1)  # (B, rows, 1, 1): the padding
        windows = torch.where(inside, windows, floor)
        windows = windows.permute(0, 2, 1, 3).reshape(-1, rows, length)  # (B * count, rows, length)
        logits = self.model(windows)
        return logits.reshape(batch, -1, logits.shape[-1]).mean(dim=1)


class WaveformClassifier(nn.Module):
    """Front end + standardization + model (+ windows) + softmax, as one module.

    Parameters
    ----------
    model : torch.nn.Module
        Logits model taking ``(B, n_features, T)`` (``input_kind='sequence'``) or
        ``(B, n_features)`` (``'vector'``); put in eval mode.
    feature : FeatureConfig
        The feature the model takes (:func:`waveform_frontend`); its
        ``pooling`` must match ``input_kind``.
    input_kind : {'sequence', 'vector'} or None
        ``None``: ``'vector'`` when ``feature.pooling == 'mean'``, else ``'sequence'``.
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
        Standardization ``(x - mean) / std`` per feature row, before the model.
    clip_frames : int or None
        The predictor's window (the checkpoint's ``clip_frames``, sequence
        models only): the graph scores the predictor's pieces and averages
        their logits (:class:`WindowedLogits`); ``None``: the whole clip,
        still padded to the model's ``min_frames`` as the predictor does.
    pad_to_window : bool
        Short clips padded to one window (see :class:`WindowedLogits`).

    Shapes
    ------
    ``(B, n)`` waveforms at ``feature.sr`` -> ``(B, n_classes)`` probabilities.
    """

    def __init__(
        self,
        model: nn.Module,
        feature: FeatureConfig,
        *,
        input_kind: str | None = None,
        norm_mean: np.ndarray | None = None,
        norm_std: np.ndarray | None = None,
        clip_frames: int | None = None,
        pad_to_window: bool = False,
    ):
        super().__init__()
        if not isinstance(feature, FeatureConfig):
            raise ParameterError(f"feature must be a FeatureConfig, got {type(feature).__name__}")
        if input_kind is None:
            input_kind = "vector" if feature.pooling == "mean" else "sequence"
        if input_kind not in ("sequence", "vector"):
            raise ParameterError(f"input_kind={input_kind!r} must be 'sequence' or 'vector'")
        if (input_kind == "vector") != (feature.pooling == "mean"):
            raise ParameterError(
                f"input_kind={input_kind!r} does not fit feature pooling={feature.pooling!r}"
            )
        if (norm_mean is None) != (norm_std is None):
            raise ParameterError("norm_mean and norm_std must be given together")
        if clip_frames is not None and input_kind != "sequence":
            raise ParameterError("clip_frames (windows) needs a sequence model")
        self.feature = feature
        self.input_kind = input_kind
        self.clip_frames = clip_frames
        self.frontend = waveform_frontend(feature)
        model = model.eval()
        min_frames = max(int(getattr(model, "min_frames", 1)), 1)
        windowed = input_kind == "sequence" and (clip_frames is not None or min_frames > 1)
        self.model = WindowedLogits(model, clip_frames, pad_to_window=pad_to_window) if windowed else model
        self.min_frames = min_frames if input_kind == "sequence" else 1
        self.min_samples = min_samples_for(feature)  # the model's min_frames: WindowedLogits pads
        self.standardize = norm_mean is not None
        if self.standardize:
            mean = np.asarray(norm_mean, dtype=np.float32)
            std = np.asarray(norm_std, dtype=np.float32)
            for name, arr in (("norm_mean", mean), ("norm_std", std)):
                if arr.shape != (feature.n_features,):
                    raise ParameterError(
                        f"{name} has shape {arr.shape}, expected ({feature.n_features},)"
                    )
            if not np.all(std > 0):
                raise ParameterError("norm_std must be positive everywhere")
            shape = (feature.n_features, 1) if input_kind == "sequence" else (feature.n_features,)
            self.register_buffer("norm_mean", torch.tensor(mean.reshape(shape)))
            self.register_buffer("norm_std", torch.tensor(std.reshape(shape)))

    def pad_short(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-pad waveforms shorter than ``min_samples`` (the deltas' 9 frames) at the end."""
        if self.min_samples <= 1:
            return y
        n = y.shape[1]  # an int in eager mode, a traced 0-d tensor while exporting
        end = torch.clamp(torch.as_tensor(n), min=self.min_samples)
        return torch.cat([y, y.new_zeros(y.shape[0], self.min_samples)], dim=1)[:, :end]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.frontend(self.pad_short(y))  # (B, n_features, T) or (B, n_features)
        if self.standardize:
            x = (x - self.norm_mean) / self.norm_std
        logits = self.model(x)  # (B, n_classes)
        return torch.softmax(logits, dim=-1)
