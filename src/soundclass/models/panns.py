"""The PANNs CNN family (Kong et al. 2020, audioset_tagging_cnn) and the default ``cnn``.

One class, :class:`PannsCNN`, parametrised by its block configuration,
reproduces the parameter layout of the public PANNs checkpoints (``bn0``,
``conv_block{i}.conv1/.bn1[/.conv2/.bn2]``, ``fc1``) so their backbone
weights load by name (see :mod:`soundclass.models.pretrained`).  The log-mel
front end lives outside the model (the cached feature, or
:class:`soundclass.dsp.frontend.FeatureFrontend`), and the AudioSet head
``fc_audioset`` is replaced by our ``fc`` with ``n_classes`` outputs.

Forward, as PANNs: ``x (B, n_mels, T) -> (B, 1, T, n_mels)``; ``bn0`` normalises
each mel bin; each block is conv-BN-ReLU (x1 or x2), 2x2 average pooling and
dropout 0.2; mean over frequency; max + mean over time; dropout 0.5;
``fc1`` + ReLU; dropout 0.5; ``fc``.  SpecAugment and mixup are not inside
the model; they are applied by the trainer (:mod:`soundclass.dsp.augment`).

Variants are one line of kwargs each:

============  ========================  ==========  ======  =====  ================
name          channels                  convs       kernel  fc1    extra
============  ========================  ==========  ======  =====  ================
``cnn6``      64, 128, 256, 512         1           5x5     512
``cnn10``     64, 128, 256, 512         2           3x3     512
``cnn14``     64, 128, ..., 2048 (6)    2           3x3     2048   last pool 1x1
``cnn``       16, 32, 64, 128           1, 1, 2, 2  3x3     128    dropout 0.1/0.2,
                                                                   level_norm
``cnn-wide``  24, 48, 96, 192           1, 1, 2, 2  3x3     192    as ``cnn``
============  ========================  ==========  ======  =====  ================

With the 527-class AudioSet head CNN6/10/14 have 4.84 M / 5.22 M / 80.75 M
parameters, the published counts.  ``cnn`` has 0.30 M, ``cnn-wide`` 0.67 M
(10 classes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.models.registry import ModelSpec, register_model

__all__ = [
    "ConvBlock", "PannsCNN", "PANNS_FEATURE", "PANNS_INPUT_FIELDS", "PANNS_FRONT_END_FIELDS",
    "PANNS_MODELS", "PANNS_VARIANTS", "CNN_FEATURE", "PANNS_SPEC", "CNN_SPEC",
]


def _init_layer(layer: nn.Module) -> None:
    """PANNs ``init_layer``: xavier-uniform weight, zero bias."""
    nn.init.xavier_uniform_(layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class ConvBlock(nn.Module):
    """``n_convs`` x (conv without bias, batch norm, ReLU), then pooling.

    Parameter names follow PANNs: ``conv1, bn1`` (and ``conv2, bn2`` when
    ``n_convs=2``; PANNs' ``ConvBlock`` and ``ConvBlock5x5`` in one class).
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, n_convs: int = 2):
        super().__init__()
        if n_convs not in (1, 2):
            raise ParameterError(f"n_convs={n_convs!r} must be 1 or 2")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ParameterError(f"kernel_size={kernel_size!r} must be a positive odd integer")
        self.n_convs = n_convs
        pad = kernel_size // 2
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, bias=False)
        if n_convs == 2:
            self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size, padding=pad, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        if n_convs == 2:
            self.bn2 = nn.BatchNorm2d(out_channels)
        _init_layer(self.conv1)
        if n_convs == 2:
            _init_layer(self.conv2)

    def forward(self, x: torch.Tensor, *, pool_size: tuple[int, int] = (2, 2)) -> torch.Tensor:
        """``x`` [shape=(B, C_in, T, F)] -> [shape=(B, C_out, T // p0, F // p1)]."""
        x = F.relu(self.bn1(self.conv1(x)))
        if self.n_convs == 2:
            x = F.relu(self.bn2(self.conv2(x)))
        if pool_size != (1, 1):
            x = F.avg_pool2d(x, kernel_size=pool_size)
        return x


class PannsCNN(nn.Module):
    """A PANNs-layout CNN: ``bn0``, conv blocks, global pooling, ``fc1``, our ``fc``.

    Parameters
    ----------
    n_classes : int
        Number of logits of the head ``fc``.
    n_features : int
        Mel bins of the input (64 for the public checkpoints); at least the
        product of the frequency pooling sizes (16 for four 2x2 pools).
    channels : sequence of int
        Output channels of each conv block.
    pools : sequence of (int, int) or None
        ``(time, freq)`` average-pooling size after each block; default 2x2 everywhere.
    kernel_size : int
        Square conv kernel (3 for CNN10/14, 5 for CNN6).
    n_convs : {1, 2} or sequence of them
        Convolutions per block (1 for CNN6), one value or one per block.
    fc_width : int or None
        Width of ``fc1``; default ``channels[-1]``.
    block_dropout, dropout : float
        Dropout after each block (0.2) and around ``fc1`` (0.5), as PANNs.
    level_norm : bool
        Subtract each clip's maximum before ``bn0`` (``ref=np.max`` for a dB
        input), which makes the model blind to recording gain.  Off for the
        PANNs variants (their checkpoints expect absolute levels).
    """

    def __init__(
        self,
        *,
        n_classes: int,
        n_features: int = 64,
        channels: Sequence[int] = (64, 128, 256, 512),
        pools: Sequence[tuple[int, int]] | None = None,
        kernel_size: int = 3,
        n_convs: int | Sequence[int] = 2,
        fc_width: int | None = None,
        block_dropout: float = 0.2,
        dropout: float = 0.5,
        level_norm: bool = False,
    ):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if not channels or min(channels) <= 0:
            raise ParameterError(f"channels={channels!r} must be non-empty positive integers")
        pools = tuple((2, 2) for _ in channels) if pools is None else tuple(tuple(p) for p in pools)
        if len(pools) != len(channels):
            raise ParameterError(f"pools={pools!r} must have one entry per block ({len(channels)})")
        self.pools = pools
        n_convs = (n_convs,) * len(channels) if isinstance(n_convs, int) else tuple(n_convs)
        if len(n_convs) != len(channels):
            raise ParameterError(f"n_convs={n_convs!r} must have one entry per block ({len(channels)})")
        self.min_frames = _product(p[0] for p in pools)
        min_bins = _product(p[1] for p in pools)
        if n_features < min_bins:
            raise ParameterError(
                f"n_features={n_features} must be >= {min_bins} (the frequency pooling of {pools})"
            )
        self.block_dropout, self.dropout = block_dropout, dropout
        self.level_norm = bool(level_norm)
        fc_width = channels[-1] if fc_width is None else int(fc_width)

        self.bn0 = nn.BatchNorm2d(n_features)
        self.n_blocks = len(channels)
        in_ch = 1
        for i, (out_ch, n_conv) in enumerate(zip(channels, n_convs, strict=True), start=1):
            block = ConvBlock(in_ch, out_ch, kernel_size=kernel_size, n_convs=n_conv)
            self.add_module(f"conv_block{i}", block)
            in_ch = out_ch
        self.fc1 = nn.Linear(channels[-1], fc_width)
        self.fc = nn.Linear(fc_width, n_classes)
        _init_layer(self.fc1)
        _init_layer(self.fc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` [shape=(B, n_mels, T)] log-mel -> logits [shape=(B, n_classes)].

        Clips shorter than the total time pooling are padded (after ``bn0``,
        with zeros, i.e. the normalised mean level) so any length works.
        """
        if x.ndim != 3 or x.shape[1] != self.bn0.num_features:
            raise ParameterError(
                f"expected (B, {self.bn0.num_features}, T) log-mel input, got shape {tuple(x.shape)}"
            )
        if self.level_norm:
            x = x - x.amax(dim=(1, 2), keepdim=True)  # loudest bin of each clip at 0 dB
        x = self.bn0(x.unsqueeze(2))  # (B, n_mels, 1, T): bn0 normalises each mel bin
        x = x.permute(0, 2, 3, 1)  # (B, 1, T, n_mels), the PANNs layout
        if x.shape[2] < self.min_frames:
            x = F.pad(x, (0, 0, 0, self.min_frames - x.shape[2]))
        for i in range(1, self.n_blocks + 1):
            x = getattr(self, f"conv_block{i}")(x, pool_size=self.pools[i - 1])
            x = F.dropout(x, p=self.block_dropout, training=self.training)
        x = x.mean(dim=3)  # (B, C, T') mean over frequency
        x = x.amax(dim=2) + x.mean(dim=2)  # (B, C) max + mean over time
        x = F.dropout(x, p=self.dropout, training=self.training)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.fc(x)  # (B, n_classes)


def _product(values) -> int:
    out = 1
    for v in values:
        out *= int(v)
    return out


# The PANNs front end (32 kHz, 1024-point STFT, hop 320, 64 mels 50-14000 Hz,
# 10*log10(max(S, 1e-10)) without top_db).
PANNS_FEATURE = FeatureConfig(
    kind="logmel", sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14000.0,
    top_db=None,
)

# Which PANNS_FEATURE settings the public weights depend on.  ``kind``,
# ``n_mels`` and ``deltas`` decide the input shape: other values make the
# weights meaningless.  The others only shift the input distribution.
PANNS_INPUT_FIELDS = ("kind", "n_mels", "deltas")
PANNS_FRONT_END_FIELDS = ("sr", "n_fft", "hop_length", "fmin", "fmax", "top_db")

# Fine-tuning defaults for pretrained PANNs backbones.
PANNS_TRAIN = {
    "epochs": 30,
    "batch_size": 32,
    "lr": 1e-4,
    "weight_decay": 1e-4,
    "optimizer": "adamw",
    "scheduler": "cosine",
    "mixup_alpha": 0.2,
    "spec_augment": True,
    "label_smoothing": 0.05,
}

PANNS_SPEC = ModelSpec(
    feature=PANNS_FEATURE,
    input="sequence",
    clip_seconds=None,
    standardize=False,  # bn0 normalises each mel bin, as in the checkpoints
    train=PANNS_TRAIN,
    description="PANNs {} (AudioSet layout; load a .pth backbone with load_pretrained)",
)

# The default model's own front end: 16 kHz, 25/32 ms windows, 10 ms hop, 64 mels.
CNN_FEATURE = FeatureConfig(
    kind="logmel", sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=20.0, top_db=80.0,
)

CNN_SPEC = ModelSpec(
    feature=CNN_FEATURE,
    input="sequence",
    clip_seconds=None,
    standardize=False,  # bn0 standardises each mel bin with running statistics
    train={
        "epochs": 30,
        "batch_size": 32,
        "lr": 2e-3,
        "weight_decay": 1e-3,
        "optimizer": "adamw",
        "scheduler": "onecycle",
        "mixup_alpha": 0.2,
        "spec_augment": True,
        # Random time stretch of +-15 % (speaking rate).  Speaker-held-out FSDD
        # (best epoch / last epoch, without -> with): lucas 0.972/0.948 -> 0.972/0.970,
        # george 0.916/0.874 -> 0.918/0.910, theo 0.980/0.966 -> 0.984/0.978.
        # freq_warp=0.1 (alone or with it) did not help on george (0.920, 0.862): off.
        "time_stretch": 0.15,
        "label_smoothing": 0.05,
    },
    description="default: slim CNN10-like (16-32-64-128, BN, level-normalised, max+mean pooling)",
)


def _panns_spec(name: str) -> ModelSpec:
    return ModelSpec(
        feature=PANNS_SPEC.feature,
        input=PANNS_SPEC.input,
        clip_seconds=PANNS_SPEC.clip_seconds,
        standardize=PANNS_SPEC.standardize,
        train=PANNS_SPEC.train,
        description=PANNS_SPEC.description.format(name),
    )


# The models in the parameter layout of the public PANNs checkpoints.
PANNS_VARIANTS = {
    "cnn6": {"channels": (64, 128, 256, 512), "kernel_size": 5, "n_convs": 1},
    "cnn10": {"channels": (64, 128, 256, 512)},
    "cnn14": {"channels": (64, 128, 256, 512, 1024, 2048), "pools": ((2, 2),) * 5 + ((1, 1),)},
}
PANNS_MODELS = tuple(PANNS_VARIANTS)
for _name, _kwargs in PANNS_VARIANTS.items():
    register_model(_name, spec=_panns_spec(_name.upper()))(partial(PannsCNN, **_kwargs))
# The default: CNN10's shape at a quarter of its width, single convs in the two
# full-resolution blocks, lighter dropout and per-clip level normalisation.
CNN_KWARGS = {
    "channels": (16, 32, 64, 128),
    "n_convs": (1, 1, 2, 2),
    "block_dropout": 0.1,
    "dropout": 0.2,
    "level_norm": True,
}
register_model("cnn", spec=CNN_SPEC)(partial(PannsCNN, **CNN_KWARGS))
register_model("cnn-wide", spec=dataclasses.replace(
    CNN_SPEC, description="the default cnn at 1.5x width (24-48-96-192): 2.2x params, ~0.6x speed"
))(partial(PannsCNN, **{**CNN_KWARGS, "channels": (24, 48, 96, 192)}))
