"""The aiSFX pretrained sound-effects network (Ma and Lerch, ISMIR 2022) and its uses.

:class:`AisfxEmbeddingNet` is the checkpoint's ``embedding_net`` with its own
parameter names (``conv_block{1..4}.{conv1,conv2,bn1,bn2}``): four blocks of
two 3x3 convolutions (no bias, padding 1), each followed by batch norm and
ReLU, channels 64-128-256-512, 2x2 max pooling after blocks 1-3.  A block
``(B, 100, 96)`` (time first, :func:`soundclass.dsp.aisfx.aisfx_blocks`) is a
one-channel image; the embedding is the mean over frequency, then the max over
time: 512 values.  4.7 M parameters; the weights come from the installed
``aisfx`` wheel (:mod:`soundclass.models.aisfx_weights`).

Library functions:

- :func:`embed_blocks` / :func:`embed_clip`: block embeddings ``(n_blocks, 512)``;
- :func:`pool_embeddings` / :func:`clip_embedding`: the clip vector
  ``[mean over blocks, max over blocks]`` (1024 values);
- :func:`aisfx_embedding`: the cacheable feature ``(512, n_blocks)``
  (soundclass' ``(n_features, t)`` layout), what ``FeatureConfig(kind='aisfx')``
  computes;
- :class:`AisfxEmbedding`: that feature from waveforms as one torch module
  (the front end of the ONNX graph of :mod:`soundclass.inference.export`).

Registered models (their features are the ``'aisfx'`` and ``'aisfx-logmel'``
kinds of :class:`soundclass.config.FeatureConfig`; the file-level embedding
command lives in :mod:`soundclass.extraction.embed`):

``aisfx-probe``
    frozen: cached block embeddings ``(B, 512, n_blocks)`` -> mean and max over
    blocks -> standardise -> linear (a logistic regression fitted by
    :func:`soundclass.training.classical.fit_classical`).
``aisfx``
    fine-tuning: aiSFX log-mel ``(B, 96, T)`` -> blocks of 100 frames (hop 50)
    -> the pretrained network -> mean and max over blocks -> dropout -> a new
    linear ``head``.  Train it with a lower learning rate for
    ``embedding_net`` than for ``head`` (:func:`param_groups`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.data.synth import DEMO_CLASSES, synthesize_clip
from soundclass.dsp.aisfx import (
    AISFX_FMAX,
    AISFX_HOP_LENGTH,
    AISFX_N_FFT,
    AISFX_N_MELS,
    AISFX_SR,
    BLOCK_FRAMES,
    aisfx_blocks,
)
from soundclass.dsp.aisfx_frontend import AisfxLogmel, cut_blocks
from soundclass.errors import ParameterError, check_positive_int
from soundclass.models.aisfx_weights import EMBEDDING_PREFIX, checkpoint_path, pretrained_state
from soundclass.models.backbone_runtime import (
    FrozenBackbone,
    backbone_runner,
    register_feature_backbone,
)
from soundclass.models.classical import StatsLinear
from soundclass.models.registry import ModelSpec, register_model
from soundclass.util.hashing import sha256_file

__all__ = [
    "EMBEDDING_DIM",
    "AISFX_BACKBONE",
    "AisfxConvBlock",
    "AisfxEmbeddingNet",
    "AisfxEmbedding",
    "AisfxClassifier",
    "pretrained_embedding_net",
    "embed_blocks",
    "embed_clip",
    "pool_embeddings",
    "clip_embedding",
    "aisfx_embedding",
    "param_groups",
]

EMBEDDING_DIM = 512
_BATCH_BLOCKS = 64  # blocks per forward pass of the frozen network


class AisfxConvBlock(nn.Module):
    """(conv 3x3 without bias -> batch norm -> ReLU) x 2, then optional 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.pool = pool
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_uniform_(conv.weight, nonlinearity="leaky_relu")  # as aiSFX

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return F.max_pool2d(x, 2) if self.pool else x


class AisfxEmbeddingNet(nn.Module):
    """The aiSFX embedding network: blocks ``(B, 100, 96)`` -> embeddings ``(B, 512)``."""

    def __init__(self, channels: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        ins = (1, *channels[:-1])
        for i, (c_in, c_out) in enumerate(zip(ins, channels, strict=True), start=1):
            self.add_module(f"conv_block{i}", AisfxConvBlock(c_in, c_out, pool=i < len(channels)))
        self.n_blocks = len(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, T, F)] -> [shape=(B, channels[-1])]."""
        if x.ndim != 3:
            raise ParameterError(f"aiSFX blocks must be (B, T, F), got shape {tuple(x.shape)}")
        x = x.unsqueeze(1)  # (B, 1, T, F)
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"conv_block{i}")(x)  # (B, C, T / 8, F / 8) after the last
        return x.mean(dim=3).amax(dim=2)  # mean over frequency, max over time: (B, C)


def _embedding_state() -> dict[str, torch.Tensor]:
    n = len(EMBEDDING_PREFIX)
    return {k[n:]: v for k, v in pretrained_state().items()}


@lru_cache(maxsize=1)
def pretrained_embedding_net() -> AisfxEmbeddingNet:
    """The pretrained network, eval mode, loaded once per process (shared: do not train it)."""
    net = AisfxEmbeddingNet()
    net.load_state_dict(_embedding_state(), strict=True)
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@lru_cache(maxsize=1)
def _weights_digest() -> str:
    return sha256_file(checkpoint_path())


def _synth_blocks(labels: tuple[str, ...], n_sources: int) -> np.ndarray:
    """aiSFX blocks of generated clips (:mod:`soundclass.data.synth`), one per clip: ``(n, 100, 96)``."""
    clips = [synthesize_clip(label, source=s, n=s, sr=AISFX_SR, seed=7) for label in labels
             for s in range(n_sources)]
    return np.concatenate([aisfx_blocks(y, sr=AISFX_SR)[:1] for y in clips])


def _probe() -> np.ndarray:
    return _synth_blocks(("crunch", "slurp"), 1)  # (2, 100, 96): a dynamic batch axis is exercised


def _calibration() -> list[np.ndarray]:
    blocks = _synth_blocks(DEMO_CLASSES, 6)  # 24 blocks
    return [blocks[i : i + 4] for i in range(0, len(blocks), 4)]


#: The pretrained network as a frozen backbone (:mod:`soundclass.models.backbone_runtime`):
#: blocks ``(B, 100, 96)`` -> embeddings ``(B, 512)``.  Tolerances measured on the probe:
#: float32 differs from torch by ~5e-6 (values up to ~12); int8 by up to ~0.3.
AISFX_BACKBONE = FrozenBackbone(
    name="aisfx", build=pretrained_embedding_net, weights_digest=_weights_digest, probe=_probe,
    tolerance={"float32": 1e-4, "int8-dynamic": 1.0, "int8-static": 1.0}, calibration=_calibration,
)


register_feature_backbone("aisfx", AISFX_BACKBONE, aisfx_blocks)


def embed_blocks(blocks: np.ndarray, *, batch_size: int = _BATCH_BLOCKS, runtime: str = "auto",
                 precision: str = "float32") -> np.ndarray:
    """Embeddings of aiSFX input blocks by the pretrained network.

    Parameters
    ----------
    blocks : np.ndarray [shape=(n_blocks, 100, 96)]
        :func:`soundclass.dsp.aisfx.aisfx_blocks` of a clip.
    batch_size : int
        Blocks per forward pass.
    runtime : {'auto', 'onnx', 'torch'}
        What runs the network (:func:`soundclass.models.backbone_runtime.backbone_runner`):
        ``'auto'`` is onnxruntime, from a graph cached in the user's cache, or
        torch with a warning when that graph cannot be had.
    precision : {'float32', 'int8-dynamic', 'int8-static'}
        Of the onnxruntime graph (the feature cache holds float32 only).

    Returns
    -------
    np.ndarray [shape=(n_blocks, 512)], float32
    """
    batch_size = check_positive_int("batch_size", batch_size)
    blocks = np.asarray(blocks, dtype=np.float32)
    if blocks.ndim != 3 or blocks.shape[1:] != (BLOCK_FRAMES, AISFX_N_MELS) or not len(blocks):
        raise ParameterError(
            f"blocks must have shape (n_blocks, {BLOCK_FRAMES}, {AISFX_N_MELS}), got {blocks.shape}"
        )
    run = backbone_runner(AISFX_BACKBONE, runtime=runtime, precision=precision)
    out = [run(blocks[i : i + batch_size]) for i in range(0, len(blocks), batch_size)]
    return np.concatenate(out).astype(np.float32, copy=False)


def embed_clip(y: np.ndarray, *, sr: float) -> np.ndarray:
    """Block embeddings of a clip: the aiSFX front end, then the pretrained network.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal (resampled to 44.1 kHz when ``sr`` differs).
    sr : float

    Returns
    -------
    np.ndarray [shape=(n_blocks, 512)], float32
        One row per block of 100 frames (hop 50; ~2.3 s, hop ~1.16 s).
    """
    return embed_blocks(aisfx_blocks(y, sr=sr))


def pool_embeddings(embeddings: np.ndarray) -> np.ndarray:
    """Mean and max over blocks: ``(n_blocks, d) -> (2 d,)``, ``[mean, max]``."""
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 2 or not len(e):
        raise ParameterError(f"embeddings must have shape (n_blocks, d), got {e.shape}")
    return np.concatenate([e.mean(axis=0), e.max(axis=0)])


def clip_embedding(y: np.ndarray, *, sr: float) -> np.ndarray:
    """The clip vector of :func:`embed_clip`, pooled: [shape=(1024,)], float32."""
    return pool_embeddings(embed_clip(y, sr=sr))


def aisfx_embedding(y: np.ndarray, sr: float) -> np.ndarray:
    """The cacheable aiSFX feature of a clip: block embeddings as ``(512, n_blocks)``, float32.

    The layout of every soundclass sequence feature ``(n_features, t)``;
    ``extraction.extract.compute_feature`` calls it for ``kind='aisfx'``.
    """
    return np.ascontiguousarray(embed_clip(y, sr=sr).T)


def _block_embeddings(net: AisfxEmbeddingNet, logmel: torch.Tensor) -> torch.Tensor:
    """``(B, 96, t)`` log-mel -> ``(B, n_blocks, 512)``: :func:`~soundclass.dsp.aisfx_frontend.cut_blocks`, then ``net``.

    No Python branch on ``t``, so a traced graph keeps the time axis dynamic.
    """
    blocks = cut_blocks(logmel)  # (B, n_blocks, 100, 96)
    batch = blocks.shape[0]
    e = net(blocks.reshape(-1, BLOCK_FRAMES, AISFX_N_MELS))  # (B * n_blocks, 512)
    return e.reshape(batch, -1, e.shape[-1])


class AisfxEmbedding(nn.Module):
    """Waveforms -> the cacheable ``'aisfx'`` feature, as :func:`aisfx_embedding` (torch, exportable).

    :class:`~soundclass.dsp.aisfx_frontend.AisfxLogmel`, blocks of 100 frames
    (hop 50, a clip shorter than one block zero-padded to one), the network.

    Parameters
    ----------
    net : AisfxEmbeddingNet or None
        ``None``: a private copy of :func:`pretrained_embedding_net` (eval mode, frozen).

    Shapes
    ------
    ``(B, n)`` mono float32 at 44.1 kHz -> ``(B, 512, n_blocks)``.
    """

    def __init__(self, net: AisfxEmbeddingNet | None = None):
        super().__init__()
        if net is None:
            net = AisfxEmbeddingNet()
            net.load_state_dict(_embedding_state(), strict=True)
            for p in net.parameters():
                p.requires_grad_(False)
        self.logmel = AisfxLogmel()
        self.net = net.eval()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return _block_embeddings(self.net, self.logmel(y)).transpose(1, 2)


class AisfxClassifier(nn.Module):
    """The aiSFX network with a new head, for fine-tuning (registered as ``aisfx``).

    Parameters
    ----------
    n_classes : int
    n_features : int
        Rows of the input log-mel; must be 96.
    pretrained : bool
        Load the aiSFX weights into ``embedding_net`` (else random, as aiSFX initialises).
    dropout : float
        Dropout before the head.
    """

    def __init__(self, *, n_classes: int, n_features: int = AISFX_N_MELS, pretrained: bool = True,
                 dropout: float = 0.2):
        super().__init__()
        if n_features != AISFX_N_MELS:
            raise ParameterError(f"n_features={n_features} must be {AISFX_N_MELS} (aiSFX mel bands)")
        self.embedding_net = AisfxEmbeddingNet()
        # A skeleton on the meta device (checkpoint checks) holds no values: nothing to load.
        if pretrained and not next(self.embedding_net.parameters()).is_meta:
            self.embedding_net.load_state_dict(_embedding_state(), strict=True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(2 * EMBEDDING_DIM, check_positive_int("n_classes", n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, 96, T)] aiSFX log-mel -> logits [shape=(B, n_classes)]."""
        if x.ndim != 3 or x.shape[1] != AISFX_N_MELS:
            raise ParameterError(f"aisfx expects (B, {AISFX_N_MELS}, T), got shape {tuple(x.shape)}")
        e = _block_embeddings(self.embedding_net, x)  # (B, n_blocks, 512); short x zero-padded
        pooled = torch.cat([e.mean(dim=1), e.amax(dim=1)], dim=-1)  # (B, 1024)
        return self.head(self.dropout(pooled))

    def param_groups(self, *, lr: float) -> list[dict]:
        """Optimizer groups: :func:`param_groups` (the network at a tenth of ``lr``)."""
        return param_groups(self, lr=lr)


def param_groups(model: AisfxClassifier, *, lr: float, backbone_lr_scale: float = 0.1) -> list[dict]:
    """Optimizer parameter groups: the head at ``lr``, the pretrained network at ``lr * scale``."""
    return [
        {"params": list(model.head.parameters()), "lr": lr},
        {"params": list(model.embedding_net.parameters()), "lr": lr * backbone_lr_scale},
    ]


# --------------------------------------------------------------------------- registry

_MEL = dict(sr=AISFX_SR, n_fft=AISFX_N_FFT, hop_length=AISFX_HOP_LENGTH, n_mels=AISFX_N_MELS,
            fmin=0.0, fmax=AISFX_FMAX, htk=True, norm=None, top_db=None)

AISFX_PROBE_SPEC = ModelSpec(
    feature=FeatureConfig(kind="aisfx", **_MEL),
    input="sequence",
    description="frozen aiSFX embeddings, mean+max over blocks -> standardise -> "
                "logistic regression (scikit-learn fit)",
)
AISFX_SPEC = ModelSpec(
    feature=FeatureConfig(kind="aisfx-logmel", **_MEL),
    input="sequence",
    clip_seconds=BLOCK_FRAMES * AISFX_HOP_LENGTH / AISFX_SR,  # one whole block
    train={"lr": 3e-4, "optimizer": "adamw", "weight_decay": 1e-4, "scheduler": "cosine",
           "warmup": 0.05, "mixup_alpha": 0.2, "spec_augment": True, "epochs": 20,
           "batch_size": 16},
    description="aiSFX pretrained CNN fine-tuned with a new head (lower backbone lr)",
)


@register_model("aisfx-probe", spec=AISFX_PROBE_SPEC)
def aisfx_probe(*, n_classes: int, n_features: int = EMBEDDING_DIM, **kwargs) -> StatsLinear:
    kwargs.setdefault("stats", ("mean", "max"))
    return StatsLinear(n_classes=n_classes, n_features=n_features, **kwargs)


@register_model("aisfx", spec=AISFX_SPEC)
def aisfx(*, n_classes: int, n_features: int = AISFX_N_MELS, **kwargs) -> AisfxClassifier:
    return AisfxClassifier(n_classes=n_classes, n_features=n_features, **kwargs)
