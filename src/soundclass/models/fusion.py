"""Both pretrained backbones at once: the aiSFX and Whisper-base clip embeddings, concatenated.

The feature ``FeatureConfig(kind='fusion')`` of a clip is one vector of
:data:`FUSION_DIM` (4608) values, stored as ``(4608, 1)``:

- the aiSFX clip vector, mean and max over its block embeddings (1024,
  :func:`soundclass.models.aisfx.clip_embedding`) of the 44.1 kHz waveform;
- the Whisper clip embedding (3584, :func:`soundclass.models.whisper.whisper_vector`)
  of the same waveform brought to 16 kHz by
  :class:`~soundclass.dsp.polyphase.PolyphaseResample`.

One waveform at one rate (44.1 kHz, so the aiSFX half keeps its upper band)
is what ``predict``, ``serve`` and the exported graph receive, so the
16 kHz signal for Whisper is made by the same resampler in the numpy path and
inside the ONNX graph.  Hence the Whisper half is not bit-equal to the
``'whisper'`` feature (decoded to 16 kHz by soxr) and the fusion feature has
cache entries of its own rather than reusing the two backbones' entries.

``fusion-probe``: the feature -> standardise -> linear (a logistic regression
fitted by :func:`soundclass.training.classical.fit_classical`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from soundclass.audio import check_audio, resample
from soundclass.config import FeatureConfig
from soundclass.dsp.aisfx import (
    AISFX_FMAX,
    AISFX_HOP_LENGTH,
    AISFX_N_FFT,
    AISFX_N_MELS,
    AISFX_SR,
    aisfx_blocks,
)
from soundclass.dsp.polyphase import PolyphaseResample
from soundclass.models import aisfx, whisper
from soundclass.models.backbone_runtime import register_feature_backbone
from soundclass.models.classical import StatsLinear
from soundclass.models.registry import ModelSpec, register_model

__all__ = ["FUSION_SR", "FUSION_DIM", "fusion_embedding", "FusionEmbedding", "FUSION_PROBE_SPEC"]

FUSION_SR = AISFX_SR
FUSION_DIM = 2 * aisfx.EMBEDDING_DIM + whisper.EMBEDDING_DIM


def _to_whisper_rate() -> PolyphaseResample:
    return PolyphaseResample(orig_sr=FUSION_SR, target_sr=whisper.WHISPER_SR)


def _at_both_rates(y: np.ndarray, sr: float) -> tuple[np.ndarray, np.ndarray]:
    """The clip at 44.1 kHz (soxr HQ when ``sr`` differs) and that brought to 16 kHz by the polyphase resampler."""
    check_audio(y, max_ndim=1)
    y = np.asarray(y, dtype=np.float32)
    if sr != FUSION_SR:
        y = resample(y, orig_sr=sr, target_sr=FUSION_SR)
    with torch.inference_mode():
        y16 = _to_whisper_rate()(torch.from_numpy(y)[None])[0].numpy()
    return y, y16


def fusion_embedding(y: np.ndarray, sr: float) -> np.ndarray:
    """The cacheable ``'fusion'`` feature of a clip: ``(4608, 1)``, float32.

    Both backbones run as :mod:`soundclass.models.backbone_runtime` runs them
    (onnxruntime from their cached graphs).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal (resampled to 44.1 kHz, soxr HQ, when ``sr`` differs).
    sr : float
    """
    y, y16 = _at_both_rates(y, sr)
    parts = [aisfx.clip_embedding(y, sr=FUSION_SR), whisper.whisper_vector(y16, sr=whisper.WHISPER_SR)]
    return np.ascontiguousarray(np.concatenate(parts)[:, None], dtype=np.float32)


def _whisper_windows(y: np.ndarray, sr: float) -> np.ndarray:
    """The Whisper windows ``(n_windows, 80, L)`` of the fusion feature's 16 kHz signal."""
    return whisper.whisper_windows(_at_both_rates(y, sr)[1], sr=whisper.WHISPER_SR)


register_feature_backbone("fusion", aisfx.AISFX_BACKBONE, aisfx_blocks)
register_feature_backbone("fusion", whisper.WHISPER_BACKBONE, _whisper_windows)


class FusionEmbedding(nn.Module):
    """Waveforms at 44.1 kHz -> the ``'fusion'`` feature, as :func:`fusion_embedding` (torch, exportable).

    Shapes
    ------
    ``(B, n)`` -> ``(B, 4608, 1)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.aisfx = aisfx.AisfxEmbedding()
        self.resample = _to_whisper_rate()
        self.whisper = whisper.WhisperEmbedding()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        blocks = self.aisfx(y)  # (B, 512, n_blocks)
        vec = torch.cat([blocks.mean(dim=2), blocks.amax(dim=2)], dim=1)  # (B, 1024)
        return torch.cat([vec.unsqueeze(-1), self.whisper(self.resample(y))], dim=1)  # (B, 4608, 1)


FUSION_PROBE_SPEC = ModelSpec(
    feature=FeatureConfig(kind="fusion", sr=AISFX_SR, n_fft=AISFX_N_FFT, hop_length=AISFX_HOP_LENGTH,
                          n_mels=AISFX_N_MELS, fmin=0.0, fmax=AISFX_FMAX, htk=True, norm=None,
                          top_db=None),
    input="sequence",
    description="frozen aiSFX and Whisper-base clip embeddings concatenated -> standardise -> "
                "logistic regression (scikit-learn fit)",
)


@register_model("fusion-probe", spec=FUSION_PROBE_SPEC)
def fusion_probe(*, n_classes: int, n_features: int = FUSION_DIM, **kwargs) -> StatsLinear:
    kwargs.setdefault("stats", ("mean",))
    return StatsLinear(n_classes=n_classes, n_features=n_features, **kwargs)
