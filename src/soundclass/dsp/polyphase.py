"""Band-limited rational resampling as one strided convolution (torch, exportable to ONNX).

:class:`PolyphaseResample` changes the rate of a batch of waveforms from
``orig_sr`` to ``target_sr`` inside a graph, where soxr (what
:func:`soundclass.audio.resample` uses for files) is not available.  With
``g = gcd(orig_sr, target_sr)``, ``up = target_sr / g`` and ``down = orig_sr / g``
(160 and 441 for 44.1 -> 16 kHz), output sample ``up * k + j`` is the dot
product of a Kaiser-windowed sinc (cutoff ``rolloff`` x the lower Nyquist
frequency, ``zeros`` zero crossings on each side) with the input around
time ``(up * k + j) * down / up``: ``up`` kernels applied with stride ``down``
(the construction of torchaudio's ``sinc_interp_kaiser``).  The signal is
zero-padded outside; the output has ``ceil(n * up / down)`` samples.

A feature that needs a second rate inside a graph uses this module in the
graph *and* in its numpy path (``compute_feature``), so the two agree to
float32 rounding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundclass.errors import ParameterError, check_positive_int

__all__ = ["polyphase_kernel", "PolyphaseResample"]

_KAISER_BETA = 14.769656459379492  # torchaudio's "kaiser_best"


def polyphase_kernel(*, orig_sr: int, target_sr: int, zeros: int = 16,
                     rolloff: float = 0.945) -> tuple[np.ndarray, int, int, int]:
    """The ``up`` interpolation kernels of a rational resampler.

    Returns
    -------
    kernel : np.ndarray [shape=(up, 2 * width + down)], float64
    up, down, width : int
        Reduced rates and the one-sided kernel reach in input samples.
    """
    orig_sr = check_positive_int("orig_sr", orig_sr)
    target_sr = check_positive_int("target_sr", target_sr)
    check_positive_int("zeros", zeros)
    if not 0.0 < rolloff <= 1.0:
        raise ParameterError(f"rolloff={rolloff!r} must be in (0, 1]")
    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    base = min(up, down) * rolloff  # cutoff, in units of the reduced rates
    width = math.ceil(zeros * down / base)
    idx = np.arange(-width, width + down, dtype=np.float64) / down  # (K,) input time, in output steps
    t = (-np.arange(up, dtype=np.float64)[:, None] / up + idx[None, :]) * base  # (up, K)
    t = np.clip(t, -zeros, zeros)
    window = np.i0(_KAISER_BETA * np.sqrt(1.0 - (t / zeros) ** 2)) / np.i0(_KAISER_BETA)
    kernel = np.sinc(t) * window * (base / down)
    return kernel, up, down, width


class PolyphaseResample(nn.Module):
    """Resample waveforms ``(B, n)`` at ``orig_sr`` to ``(B, ceil(n * up / down))`` at ``target_sr``.

    Parameters
    ----------
    orig_sr, target_sr : int
    zeros : int
        Zero crossings of the sinc on each side.
    rolloff : float
        Cutoff as a fraction of the lower Nyquist frequency.
    """

    def __init__(self, *, orig_sr: int, target_sr: int, zeros: int = 16, rolloff: float = 0.945):
        super().__init__()
        kernel, self.up, self.down, self.width = polyphase_kernel(
            orig_sr=orig_sr, target_sr=target_sr, zeros=zeros, rolloff=rolloff)
        self.register_buffer("kernel", torch.tensor(kernel[:, None, :], dtype=torch.float32))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        batch = y.shape[0]
        n = torch.as_tensor(y.shape[1])  # traced: the length stays dynamic
        x = F.pad(y.unsqueeze(1), (self.width, self.width + self.down))  # (B, 1, n + pad)
        out = F.conv1d(x, self.kernel, stride=self.down)  # (B, up, blocks)
        out = out.transpose(1, 2).reshape(batch, -1)  # (B, up * blocks)
        return out[:, : (n * self.up + self.down - 1) // self.down]
