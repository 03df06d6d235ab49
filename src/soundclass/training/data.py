"""Training data: seeds, class balance, standardization statistics, clip length and the loader.

Every random draw is seeded from ``(config.seed, epoch, ...)`` through
:func:`derive_seed`, so the crop of a clip or the order of an epoch depends
on neither the worker nor the process that draws it, nor on a resume.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from soundclass.dsp import augment
from soundclass.errors import ParameterError
from soundclass.training import distributed as dist
from soundclass.training.config import TrainConfig

__all__ = [
    "CLIP_PERCENTILE",
    "CLIP_SECONDS_RANGE",
    "ClipDataset",
    "class_weights",
    "clip_seconds_from_data",
    "derive_seed",
    "make_loaders",
    "norm_stats",
    "sample_weights",
    "set_epoch",
]

CLIP_SECONDS_RANGE = (0.5, 10.0)
CLIP_PERCENTILE = 90.0


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from ``seed`` and ``keys`` (e.g. epoch, purpose)."""
    words = [int(seed)]
    for k in keys:
        if isinstance(k, (int, np.integer)):
            words.append(int(k))
        else:
            words.append(int.from_bytes(hashlib.sha256(str(k).encode()).digest()[:8], "little"))
    return int(np.random.SeedSequence(words).generate_state(2, np.uint64)[0] >> np.uint64(1))


def class_weights(targets: Sequence[int], *, n_classes: int) -> np.ndarray:
    """``n / (n_classes_present * count)`` per class (scikit-learn's "balanced"); 0 for absent classes.

    Returns
    -------
    np.ndarray [shape=(n_classes,)], float32
    """
    t = np.asarray(targets, dtype=np.int64)
    if t.size == 0:
        raise ParameterError("targets is empty: cannot compute class weights")
    if t.min() < 0 or t.max() >= n_classes:
        raise ParameterError(f"targets must be in [0, {n_classes}), got [{t.min()}, {t.max()}]")
    counts = np.bincount(t, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes, dtype=np.float64)
    w[present] = t.size / (present.sum() * counts[present])
    return w.astype(np.float32)


def sample_weights(targets: Sequence[int], *, n_classes: int) -> np.ndarray:
    """Per-item sampling weights ``1 / count(class)`` (every class drawn equally often)."""
    t = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(t, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[t]


def norm_stats(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every feature row over all frames of all clips.

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i) or (n_features,)]

    Returns
    -------
    mean, std : np.ndarray [shape=(n_features,)], float32
        ``std`` is floored at ``1e-5`` so constant rows do not divide by zero.
    """
    if len(features) == 0:
        raise ParameterError("cannot compute standardization stats of zero clips")
    mats = [np.asarray(f, dtype=np.float64) for f in features]
    mats = [m[:, None] if m.ndim == 1 else m for m in mats]  # (n_features, t_i)
    count = sum(m.shape[1] for m in mats)
    mean = sum(m.sum(axis=1) for m in mats) / count
    # second pass on deviations: no cancellation for rows far from zero (power spectra, dB)
    var = sum(np.square(m - mean[:, None]).sum(axis=1) for m in mats) / count
    std = np.maximum(np.sqrt(var), 1e-5)
    return mean.astype(np.float32), std.astype(np.float32)


def clip_seconds_from_data(n_frames: Sequence[int], *, frame_rate: float) -> float:
    """The 90th percentile of clip durations, clamped to [0.5 s, 10 s]."""
    if len(n_frames) == 0:
        raise ParameterError("cannot choose clip_seconds from zero clips")
    seconds = np.percentile(np.asarray(n_frames, dtype=np.float64) / frame_rate, CLIP_PERCENTILE)
    return float(np.clip(seconds, *CLIP_SECONDS_RANGE))


class ClipDataset(torch.utils.data.Dataset):
    """Standardized features and targets; sequence clips are randomly cropped/padded.

    The crop of item ``i`` in epoch ``e`` uses ``np.random.default_rng(derive_seed(seed, e, i))``
    so it does not depend on the order, the worker or the process that draws it.

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i) or (n_features,)]
        Already standardized.
    targets : sequence of int
    clip_frames : int or None
        Window length of sequence models (``None`` for vector models).
    seed : int
    """

    def __init__(self, features: Sequence[np.ndarray], targets: Sequence[int], *,
                 clip_frames: int | None, seed: int):
        if len(features) != len(targets):
            raise ParameterError(f"{len(features)} features but {len(targets)} targets")
        self.features = [np.asarray(f, dtype=np.float32) for f in features]
        self.targets = np.asarray(targets, dtype=np.int64)
        self.clip_frames = clip_frames
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.features[i]
        if x.ndim == 2 and self.clip_frames is not None:
            rng = np.random.default_rng(derive_seed(self.seed, self.epoch, int(i)))
            x = augment.crop_or_pad(x, self.clip_frames, mode="random", rng=rng)  # (n_features, L)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self.targets[i])


def make_loaders(
    features: Sequence[np.ndarray],
    targets: Sequence[int],
    *,
    config: TrainConfig,
    n_classes: int,
    clip_frames: int | None,
) -> DataLoader:
    """The training ``DataLoader`` (validation needs none: it runs on whole clips).

    The sampler is a ``DistributedSampler`` under ``torchrun``, a
    ``WeightedRandomSampler`` for ``balance='sampler'``, else a shuffling
    ``RandomSampler``; each is reseeded per epoch by :func:`set_epoch` (from ``train_one_epoch``).
    The last partial batch is dropped when there is more than one batch
    (BatchNorm cannot train on a batch of one).
    """
    dataset = ClipDataset(features, targets, clip_frames=clip_frames, seed=config.seed)
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "sampler"))
    ctx = dist.context()
    if ctx.world_size > 1:
        if config.balance == "sampler":
            raise ParameterError("balance='sampler' is not supported with distributed training; use 'weights'")
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=config.seed
        )
        per_rank = math.ceil(len(dataset) / ctx.world_size)
    elif config.balance == "sampler":
        w = torch.as_tensor(sample_weights(targets, n_classes=n_classes), dtype=torch.double)
        sampler = WeightedRandomSampler(w, num_samples=len(dataset), replacement=True, generator=generator)
        per_rank = len(dataset)
    else:
        sampler = RandomSampler(dataset, generator=generator)
        per_rank = len(dataset)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        sampler=sampler,
        drop_last=per_rank > config.batch_size,
        num_workers=0,
    )


def set_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    """Reseed the crops and the sampler of ``loader`` for ``epoch``."""
    loader.dataset.set_epoch(epoch)
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif getattr(sampler, "generator", None) is not None:
        sampler.generator.manual_seed(derive_seed(seed, epoch, "sampler"))
