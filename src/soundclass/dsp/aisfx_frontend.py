"""The aiSFX front end as torch modules, exportable to ONNX.

The torch twin of :mod:`soundclass.dsp.aisfx` (steps 2-5 of its recipe; the
waveform must already be mono at 44.1 kHz):

- :class:`AisfxLogmel`: peak normalisation, the mel power spectrogram as a
  DFT convolution (:class:`soundclass.dsp.frontend.Spectrogram`), the
  unit-L1 HTK filterbank and ``log10(1e4 * S + 1) / 9.457798957824707``,
  equal to :func:`soundclass.dsp.aisfx.aisfx_logmel`;
- :func:`cut_blocks`: blocks of 100 frames with a hop of 50, equal to
  :func:`soundclass.dsp.aisfx.frames_to_blocks` (an incomplete last block is
  dropped, a feature shorter than one block is zero-padded to one).

Both work on any number of frames without Python branches on the length, so
a traced graph keeps the time axis dynamic.  Precision against the numpy
recipe (float32, ``tests/test_export_models.py``): a few 1e-6 on the log-mel.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from soundclass.dsp.aisfx import (
    AISFX_FMAX,
    AISFX_HOP_LENGTH,
    AISFX_LOG_MAX,
    AISFX_N_FFT,
    AISFX_N_MELS,
    AISFX_SR,
    BLOCK_FRAMES,
    BLOCK_HOP,
    l1_gain,
)
from soundclass.dsp.filters import mel as mel_filter
from soundclass.dsp.frontend import MelScale, Spectrogram
from soundclass.errors import check_positive_int

__all__ = ["AisfxLogmel", "cut_blocks"]


class AisfxLogmel(nn.Module):
    """Waveforms at 44.1 kHz -> the aiSFX log-mel, as :func:`~soundclass.dsp.aisfx.aisfx_logmel`.

    Each row is divided by its own absolute peak (by 1 when silent).

    Shapes
    ------
    ``(B, n)`` float32 -> ``(B, 96, 1 + n // 1024)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(n_fft=AISFX_N_FFT, hop_length=AISFX_HOP_LENGTH, center=True,
                                       pad_mode="constant", power=2.0)
        basis = mel_filter(sr=AISFX_SR, n_fft=AISFX_N_FFT, n_mels=AISFX_N_MELS, fmin=0.0,
                           fmax=AISFX_FMAX, htk=True, norm=None, dtype=np.float32)
        self.mel = MelScale(basis * l1_gain("float32"))  # norm=1.0: unit L1 per filter
        self.scale = 1.0 / (math.log(10.0) * AISFX_LOG_MAX)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        peak = y.abs().amax(dim=1, keepdim=True)  # (B, 1)
        y = y / torch.where(peak > 0, peak, torch.ones_like(peak))
        S = self.mel(self.spectrogram(y))  # (B, 96, t)
        return torch.log(1e4 * S + 1.0) * self.scale


def cut_blocks(S: torch.Tensor, *, block_frames: int = BLOCK_FRAMES,
               block_hop: int = BLOCK_HOP) -> torch.Tensor:
    """Overlapping time-major blocks of a batch of features, as :func:`~soundclass.dsp.aisfx.frames_to_blocks`.

    Parameters
    ----------
    S : torch.Tensor [shape=(B, n_mels, t)]
    block_frames, block_hop : int
        Block length and hop in frames.

    Returns
    -------
    torch.Tensor [shape=(B, n_blocks, block_frames, n_mels)]
        ``n_blocks = 1 + (max(t, block_frames) - block_frames) // block_hop``;
        a feature shorter than one block is zero-padded (at the end) to one.
    """
    block_frames = check_positive_int("block_frames", block_frames)
    block_hop = check_positive_int("block_hop", block_hop)
    batch, rows = S.shape[0], S.shape[1]
    # a traced 0-d tensor while exporting: the length stays dynamic in the graph
    end = torch.clamp(torch.as_tensor(S.shape[2]), min=block_frames)
    S = torch.cat([S, S.new_zeros(batch, rows, block_frames)], dim=2)[:, :, :end]
    n_blocks = 1 + (end - block_frames) // block_hop
    idx = (torch.arange(n_blocks)[:, None] * block_hop + torch.arange(block_frames)[None, :]).reshape(-1)
    blocks = torch.index_select(S, 2, idx).reshape(batch, rows, -1, block_frames)
    return blocks.permute(0, 2, 3, 1)  # (B, n_blocks, block_frames, n_mels)
