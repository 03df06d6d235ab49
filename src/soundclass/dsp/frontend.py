"""Torch feature frontend: the features of :mod:`soundclass.extraction.extract`, from waveforms.

Thin :class:`torch.nn.Module` wrappers in the torchaudio style: every constant
(DFT kernels, mel filterbank, DCT matrix, delta operators) is built once in
numpy, in float64, and kept as a buffer; ``forward`` only does convolutions,
matmuls and element-wise ops.  There is no ``torch.stft`` and no complex
tensor, so the whole frontend exports to ONNX (opset >= 13).

:class:`FeatureFrontend` turns raw mono waveforms ``(B, n)`` at ``config.sr``
into exactly what ``soundclass.extraction.extract.compute_feature(y, config)`` (which
equals librosa) returns, batched:

- ``melspectrogram``: ``librosa.feature.melspectrogram``
- ``logmel``: ``librosa.power_to_db(melspectrogram, ref=1.0, amin=1e-10, top_db)``,
  the ``top_db`` floor taken relative to each example's own maximum
- ``mfcc``: DCT-II (ortho) of the log-mel, first ``n_mfcc`` rows (``lifter=0``)
- ``deltas``: ``librosa.feature.delta(width=9, mode='interp')`` of order 1 (and 2)
  appended along the feature axis
- ``pooling='mean'``: mean over time.

Precision (checked by ``tests/test_frontend.py``): in float64
(``dtype=torch.float64``) everything agrees with float64 librosa to ~1e-13 (the
tests demand 1e-3 dB for dB features and 1e-9 relative for the power mel).  In
float32, on real clips (FSDD, donateacry, resampled), the frontend and the
float32 ``compute_feature`` differ by at most ~1.2e-3 dB (log-mel/MFCC with
``top_db=80``), ~0.05 dB with ``top_db=None`` (bins near the -100 dB ``amin``
floor, where both sides are dominated by float32 rounding) and ~1e-6 of the
peak for the power mel.  A pure tone (most bins ~80 dB below the peak) stays
within 0.05 dB above peak - 60 dB and within 3 dB down to the ``top_db`` floor.
The DFT convolution costs O(n_fft) per bin instead of an FFT: fine for export
and batches on CPU, slower than ``compute_feature`` for large ``n_fft``.
"""

from __future__ import annotations

import math

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch
from torch import nn
from torch.nn import functional as F

from soundclass.config import PRETRAINED_KINDS, FeatureConfig
from soundclass.dsp import filters
from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "dft_kernel",
    "dct_matrix",
    "delta_operator",
    "Spectrogram",
    "MelScale",
    "PowerToDB",
    "DCT",
    "Delta",
    "FeatureFrontend",
    "DELTA_WIDTH",
    "AMIN",
]

DELTA_WIDTH = 9
"""Window of ``librosa.feature.delta`` used for every delta feature."""

AMIN = 1e-10
"""Floor of ``power_to_db`` (librosa's default ``amin``)."""

_TORCH_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}


def _checking() -> bool:
    """Eager python-side checks are skipped while tracing/exporting a graph."""
    return not (torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


# --------------------------------------------------------------------------- numpy builders


def dft_kernel(*, n_fft: int, win_length: int | None = None, window: str = "hann") -> np.ndarray:
    """Windowed real-DFT kernels: the STFT as a bank of FIR filters.

    Row ``k`` (``k < n_fft // 2 + 1``) is ``w[m] * cos(2 pi k m / n_fft)`` and row
    ``n_fft // 2 + 1 + k`` is ``-w[m] * sin(2 pi k m / n_fft)``, so correlating a
    frame with them gives the real and imaginary part of ``numpy.fft.rfft(w * frame)``.
    ``w`` is ``librosa.filters.get_window(window, win_length, fftbins=True)``
    centred in ``n_fft`` samples, as in ``librosa.stft``.

    Parameters
    ----------
    n_fft : int > 0
    win_length : int <= n_fft or None
        ``None`` means ``n_fft``.
    window : str
        Any window name ``librosa.filters.get_window`` accepts.

    Returns
    -------
    kernel : np.ndarray [shape=(2 * (n_fft // 2 + 1), n_fft), dtype=float64]
    """
    n_fft = check_positive_int("n_fft", n_fft)
    win_length = n_fft if win_length is None else win_length
    if not 0 < win_length <= n_fft:
        raise ParameterError(f"win_length={win_length!r} must be in 1..n_fft={n_fft}")
    w = librosa.filters.get_window(window, win_length, fftbins=True).astype(np.float64)
    w = librosa.util.pad_center(w, size=n_fft)
    n_freq = n_fft // 2 + 1
    # integer (k * m) mod n_fft keeps the angle in [0, 2 pi): exact to float64 rounding
    phase = (np.arange(n_freq)[:, None] * np.arange(n_fft)[None, :]) % n_fft
    angle = (2.0 * np.pi / n_fft) * phase
    return np.concatenate([np.cos(angle) * w, -np.sin(angle) * w], axis=0)


def dct_matrix(*, n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix: ``D @ S == scipy.fft.dct(S, axis=-2, norm='ortho')[:n_mfcc]``.

    Returns
    -------
    D : np.ndarray [shape=(n_mfcc, n_mels), dtype=float64]
    """
    if not 0 < n_mfcc <= n_mels:
        raise ParameterError(f"n_mfcc={n_mfcc!r} must be in 1..n_mels={n_mels}")
    return scipy.fft.dct(np.eye(n_mels), type=2, axis=0, norm="ortho")[:n_mfcc]


def delta_operator(*, order: int, width: int = DELTA_WIDTH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``librosa.feature.delta(mode='interp')`` as a length-independent linear operator.

    ``delta`` is a Savitzky-Golay derivative (``polyorder=deriv=order``).  In the
    interior it is one ``width``-tap correlation; each of the first (last)
    ``width // 2`` outputs is the derivative of the polynomial fitted to the first
    (last) ``width`` frames, i.e. a fixed linear map of those frames.  The three
    parts are read off the filter applied to the identity of size ``width``.

    Parameters
    ----------
    order : int > 0
        Derivative order (1: delta, 2: delta-delta).
    width : odd int >= 3

    Returns
    -------
    left : np.ndarray [shape=(width // 2, width)]
        ``out[:h] = left @ x[:width]``.
    kernel : np.ndarray [shape=(width,)]
        ``out[t] = kernel @ x[t - h : t + h + 1]`` for ``h <= t < T - h``.
    right : np.ndarray [shape=(width // 2, width)]
        ``out[T - h:] = right @ x[T - width:]``.
    """
    order = check_positive_int("order", order)
    if width < 3 or width % 2 != 1:
        raise ParameterError(f"width={width!r} must be an odd integer >= 3")
    if order >= width:
        raise ParameterError(f"order={order} must be < width={width}")
    # column j = response to a unit impulse at frame j; row t = weights of output t
    op = scipy.signal.savgol_filter(
        np.eye(width), width, polyorder=order, deriv=order, axis=0, mode="interp"
    )
    h = width // 2
    return op[:h].copy(), op[h].copy(), op[h + 1 :].copy()


def _mel_basis(config: FeatureConfig) -> np.ndarray:
    """The mel filterbank of ``config``, float32 values as librosa uses them."""
    return filters.mel(
        sr=config.sr,
        n_fft=config.n_fft,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
        htk=config.htk,
        norm=config.norm,
        dtype=np.float32,
    )


# --------------------------------------------------------------------------- modules


class Spectrogram(nn.Module):
    """``|librosa.stft(y)| ** power`` as a strided 1-D convolution with DFT kernels.

    Parameters
    ----------
    n_fft, hop_length, win_length, window, center, pad_mode, power
        As in ``librosa.stft`` / ``librosa.feature.melspectrogram``.
        ``pad_mode`` is ``'constant'`` (zeros, the default), ``'reflect'`` (the
        signal must be longer than ``n_fft // 2``) or ``'edge'``.
    dtype : torch.dtype
        Dtype of the kernels (``torch.float64`` for reference-grade precision).

    Shapes
    ------
    ``(B, n) -> (B, n_fft // 2 + 1, t)`` with ``t = 1 + n // hop_length`` when
    ``center`` (even ``n_fft``), ``t = 1 + (n - n_fft) // hop_length`` otherwise.
    """

    def __init__(
        self,
        *,
        n_fft: int = 2048,
        hop_length: int = 512,
        win_length: int | None = None,
        window: str = "hann",
        center: bool = True,
        pad_mode: str = "constant",
        power: float = 2.0,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        hop_length = check_positive_int("hop_length", hop_length)
        if pad_mode not in _TORCH_PAD_MODES:
            raise ParameterError(
                f"pad_mode={pad_mode!r} is not supported by the torch frontend; "
                f"use one of {tuple(_TORCH_PAD_MODES)}"
            )
        if power <= 0:
            raise ParameterError(f"power={power!r} must be positive")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.center = center
        self.pad_mode = pad_mode
        self.power = float(power)
        self.n_freq = n_fft // 2 + 1
        kernel = dft_kernel(n_fft=n_fft, win_length=win_length, window=window)
        self.register_buffer("kernel", torch.as_tensor(kernel[:, None, :], dtype=dtype))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if _checking():
            if y.dim() != 2:
                raise ParameterError(f"waveforms must have shape (batch, samples), got {tuple(y.shape)}")
            if not self.center and y.shape[-1] < self.n_fft:
                raise ParameterError(
                    f"n_fft={self.n_fft} is too large for uncentered analysis of "
                    f"a signal of length={y.shape[-1]}"
                )
            if self.center and self.pad_mode == "reflect" and y.shape[-1] <= self.n_fft // 2:
                raise ParameterError(
                    f"pad_mode='reflect' needs signals longer than n_fft // 2={self.n_fft // 2}, "
                    f"got length={y.shape[-1]}"
                )
        x = y.unsqueeze(1)  # (B, 1, n)
        if self.center:
            pad = self.n_fft // 2
            x = F.pad(x, (pad, pad), mode=_TORCH_PAD_MODES[self.pad_mode])
        spec = F.conv1d(x, self.kernel, stride=self.hop_length)  # (B, 2 * n_freq, t)
        re, im = spec[:, : self.n_freq], spec[:, self.n_freq :]
        power = re * re + im * im  # (B, n_freq, t)
        if self.power == 2.0:
            return power
        if self.power == 1.0:
            return torch.sqrt(power)
        return torch.pow(power, self.power / 2.0)


class MelScale(nn.Module):
    """Multiply a spectrogram by a fixed mel filterbank.

    Parameters
    ----------
    mel_basis : np.ndarray [shape=(n_mels, n_fft // 2 + 1)]
    dtype : torch.dtype

    Shapes
    ------
    ``(B, n_freq, t) -> (B, n_mels, t)``
    """

    def __init__(self, mel_basis: np.ndarray, *, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.register_buffer("fb", torch.tensor(np.array(mel_basis), dtype=dtype))  # own copy

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.fb, spec)


class PowerToDB(nn.Module):
    """``librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=top_db)`` per example.

    The ``top_db`` floor is relative to the maximum of each example (over all
    rows and frames), exactly as librosa on one clip.

    Shapes
    ------
    ``(B, n, t) -> (B, n, t)``
    """

    def __init__(self, *, top_db: float | None = 80.0, amin: float = AMIN):
        super().__init__()
        if top_db is not None and top_db < 0:
            raise ParameterError(f"top_db={top_db!r} must be non-negative or None")
        if amin <= 0:
            raise ParameterError(f"amin={amin!r} must be positive")
        self.top_db = None if top_db is None else float(top_db)
        self.amin = float(amin)

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        log_spec = (10.0 / math.log(10.0)) * torch.log(torch.clamp(S, min=self.amin))
        if self.top_db is None:
            return log_spec
        peak = torch.amax(log_spec, dim=(-2, -1), keepdim=True)  # (B, 1, 1)
        return torch.maximum(log_spec, peak - self.top_db)


class DCT(nn.Module):
    """DCT-II (ortho) along the feature axis, first ``n_mfcc`` coefficients.

    Shapes
    ------
    ``(B, n_mels, t) -> (B, n_mfcc, t)``
    """

    def __init__(self, *, n_mels: int, n_mfcc: int, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.register_buffer("dct", torch.as_tensor(dct_matrix(n_mels=n_mels, n_mfcc=n_mfcc), dtype=dtype))

    def forward(self, S: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.dct, S)


class Delta(nn.Module):
    """``librosa.feature.delta(X, width=9, order=order, mode='interp')`` along time.

    Needs at least ``width`` frames, as librosa does (``ParameterError`` in
    eager mode; an exported graph fails at run time).

    Parameters
    ----------
    n_features : int
        Rows of the input (the depthwise interior filter has one copy per row).
    order : {1, 2}
    width : odd int >= 3
    dtype : torch.dtype

    Shapes
    ------
    ``(B, n_features, t) -> (B, n_features, t)``
    """

    def __init__(self, n_features: int, *, order: int, width: int = DELTA_WIDTH, dtype: torch.dtype = torch.float32):
        super().__init__()
        left, kernel, right = delta_operator(order=order, width=width)
        self.width = width
        self.n_features = n_features
        self.register_buffer("left_t", torch.as_tensor(left.T.copy(), dtype=dtype))  # (width, h)
        self.register_buffer("right_t", torch.as_tensor(right.T.copy(), dtype=dtype))  # (width, h)
        depthwise = np.broadcast_to(kernel, (n_features, 1, width)).copy()
        self.register_buffer("kernel", torch.as_tensor(depthwise, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _checking() and x.shape[-1] < self.width:
            raise ParameterError(
                f"deltas need at least width={self.width} frames, got {x.shape[-1]}; "
                "use a longer clip or a smaller hop_length"
            )
        head = torch.matmul(x[..., : self.width], self.left_t)  # (B, F, h)
        body = F.conv1d(x, self.kernel, groups=self.n_features)  # (B, F, t - 2h)
        tail = torch.matmul(x[..., -self.width :], self.right_t)  # (B, F, h)
        return torch.cat([head, body, tail], dim=-1)


class FeatureFrontend(nn.Module):
    """Waveforms -> the feature of ``config``, equal to ``compute_feature(y, config)``.

    Parameters
    ----------
    config : FeatureConfig
        Every kind but the pretrained networks' (``melspectrogram``, ``logmel``, ``mfcc``), ``deltas`` and
        ``pooling`` is supported.  ``max_duration`` is not applied: the frontend
        features whatever waveform it is given.
    dtype : torch.dtype
        Dtype of the constant buffers; use ``torch.float64`` (and float64 input)
        for reference-grade precision.  ``module.double()`` after construction
        would cast float32-rounded constants instead.

    Shapes
    ------
    ``(B, n)`` float waveforms at ``config.sr`` -> ``(B, n_features, t)``, or
    ``(B, n_features)`` when ``config.pooling == 'mean'``.  Any ``n >= 1`` works
    with ``center=True`` (a signal shorter than ``n_fft`` gives ``1 + n // hop_length``
    frames, as in librosa); deltas need at least 9 frames.
    """

    def __init__(self, config: FeatureConfig, *, dtype: torch.dtype = torch.float32):
        super().__init__()
        if not isinstance(config, FeatureConfig):
            raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
        if config.kind in PRETRAINED_KINDS:
            raise ParameterError(
                f"kind={config.kind!r} has its own front end (soundclass.dsp.aisfx_frontend, "
                "soundclass.models.aisfx.AisfxEmbedding, soundclass.models.whisper, "
                "soundclass.models.fusion; inference.waveform_graph.waveform_frontend), not FeatureFrontend"
            )
        self.config = config
        self.spectrogram = Spectrogram(
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            win_length=config.win_length,
            window=config.window,
            center=config.center,
            pad_mode=config.pad_mode,
            power=config.power,
            dtype=dtype,
        )
        self.mel = MelScale(_mel_basis(config), dtype=dtype)
        self.to_db = PowerToDB(top_db=config.top_db) if config.kind != "melspectrogram" else None
        self.dct = DCT(n_mels=config.n_mels, n_mfcc=config.n_mfcc, dtype=dtype) if config.kind == "mfcc" else None
        base = config.n_mfcc if config.kind == "mfcc" else config.n_mels
        self.deltas = nn.ModuleList(
            Delta(base, order=order, dtype=dtype) for order in range(1, config.deltas + 1)
        )

    @property
    def n_features(self) -> int:
        """Rows of the output, ``config.n_features``."""
        return self.config.n_features

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        S = self.mel(self.spectrogram(y))  # (B, n_mels, t)
        if self.to_db is not None:
            S = self.to_db(S)
        if self.dct is not None:
            S = self.dct(S)  # (B, n_mfcc, t)
        if len(self.deltas):
            S = torch.cat([S, *(delta(S) for delta in self.deltas)], dim=1)  # (B, n_features, t)
        if self.config.pooling == "mean":
            return S.mean(dim=-1)  # (B, n_features)
        return S
