"""Training data: seeds, class balance, standardization statistics, clip length and the loader.

Every random draw is seeded from ``(config.seed, epoch, ...)`` through
:func:`derive_seed`, so the crop of a clip or the order of an epoch depends
on neither the worker nor the process that draws it, nor on a resume.

Sequence batches are built without padding waste: the crop length is the
90th percentile of the clip durations but at most twice the median
(:func:`clip_seconds_from_data`; longer clips are randomly cropped),
:class:`BucketBatchSampler` groups clips of similar
length, and :class:`ClipDataset` crops/pads each batch to its own longest
clip (at most the crop length).  In-memory clips are torch tensors made
once; features still in the cache
(:class:`~soundclass.extraction.stored.StoredFeatures`) are read for each
batch, so memory is bounded by the batch.  A batch is one preallocated
tensor filled by slice copies.  Nothing here holds all the clips when they
are stored: lengths come from the recorded shapes and :func:`norm_stats`
reads each clip once.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from soundclass.errors import ParameterError
from soundclass.extraction.stored import StoredFeatures, feature_shapes
from soundclass.inference.predictor import standardize
from soundclass.training import distributed as dist
from soundclass.training.config import TrainConfig

__all__ = [
    "BUCKET_PADDING_SHARE",
    "BUCKET_POOL",
    "CLIP_MEDIAN_RATIO",
    "CLIP_PERCENTILE",
    "BucketBatchSampler",
    "CLIP_SECONDS_RANGE",
    "ClipDataset",
    "bucket_from_data",
    "class_weights",
    "clip_seconds_from_data",
    "derive_seed",
    "float32_features",
    "loss_weights",
    "make_loaders",
    "norm_stats",
    "padding_share",
    "sample_weights",
    "set_epoch",
]

CLIP_SECONDS_RANGE = (0.5, 10.0)
# The crop holds a typical clip whole (the 90th percentile: short events such as
# spoken digits are not cut), but a long tail does not set it for everyone: at
# most twice the median duration (longer clips are randomly cropped, a new window
# each epoch).  With bucketed batches the shorter clips are padded only up to the
# longest clip of their batch.  (Until this change: the 90th percentile alone, every
# batch padded to it; clip_seconds_from_data(..., median_ratio=None), bucket=False.)
CLIP_PERCENTILE = 90.0
CLIP_MEDIAN_RATIO = 2.0
# Bucketed batches by default only when padding every clip to the crop length would
# make more than this share of the input padding.  Below it the random placement of
# short clips in the crop is a useful time-shift augmentation: speaker-held-out FSDD
# (6 epochs, lucas) 0.896 padded to the crop vs 0.786 bucketed, at 28 % padding.
BUCKET_PADDING_SHARE = 1 / 3
# Batches sorted by length together: a pool of this many batches is drawn in the
# sampler's order, sorted by (jittered) length, cut into batches; batch order is shuffled.
BUCKET_POOL = 50


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


def loss_weights(targets: Sequence[int], *, n_classes: int, balance: str) -> np.ndarray | None:
    """The class weights of the loss for ``balance``: :func:`class_weights`, their square roots or ``None``.

    ``'sqrt'`` keeps the order of the "balanced" weights but shrinks their
    spread (a 50:1 ratio becomes 7:1), so one rare clip does not dominate a batch.
    """
    if balance not in ("weights", "sqrt"):
        return None
    w = class_weights(targets, n_classes=n_classes)
    return np.sqrt(w) if balance == "sqrt" else w


def sample_weights(targets: Sequence[int], *, n_classes: int) -> np.ndarray:
    """Per-item sampling weights ``1 / count(class)`` (every class drawn equally often)."""
    t = np.asarray(targets, dtype=np.int64)
    counts = np.bincount(t, minlength=n_classes).astype(np.float64)
    return 1.0 / counts[t]


def float32_features(features: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
    """Every clip as a float32 array; a :class:`StoredFeatures` (float32 already) stays unread."""
    if isinstance(features, StoredFeatures):
        return features
    return [np.asarray(f, dtype=np.float32) for f in features]


def norm_stats(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of every feature row over all frames of all clips.

    One pass that holds one clip at a time: each clip's mean and sum of
    squared deviations (two passes over the clip, in float64), merged with
    the running ones by Chan et al.'s pairwise update, so rows far from zero
    (power spectra, dB) lose nothing to cancellation.

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i) or (n_features,)], or StoredFeatures

    Returns
    -------
    mean, std : np.ndarray [shape=(n_features,)], float32
        ``std`` is floored at ``1e-5`` so constant rows do not divide by zero.
    """
    if len(features) == 0:
        raise ParameterError("cannot compute standardization stats of zero clips")
    count, mean, m2 = 0, None, None
    for f in features:
        m = np.asarray(f, dtype=np.float64)
        m = m[:, None] if m.ndim == 1 else m  # (n_features, t_i)
        n = m.shape[1]
        if n == 0:
            continue
        mean_b = m.mean(axis=1)
        m2_b = np.square(m - mean_b[:, None]).sum(axis=1)
        if mean is None:
            count, mean, m2 = n, mean_b, m2_b
            continue
        total = count + n
        delta = mean_b - mean
        mean = mean + delta * (n / total)
        m2 = m2 + m2_b + np.square(delta) * (count * n / total)
        count = total
    if mean is None:
        raise ParameterError("cannot compute standardization stats of clips without frames")
    std = np.maximum(np.sqrt(m2 / count), 1e-5)
    return mean.astype(np.float32), std.astype(np.float32)


def clip_seconds_from_data(n_frames: Sequence[int], *, frame_rate: float,
                           percentile: float = CLIP_PERCENTILE,
                           median_ratio: float | None = CLIP_MEDIAN_RATIO) -> float:
    """The training crop length: a percentile of the clip durations, at most ``median_ratio`` x the median.

    Parameters
    ----------
    n_frames : sequence of int
        Frames of every training clip.
    frame_rate : float
        Frames per second.
    percentile : float
        In [0, 100]; default 90.
    median_ratio : float or None
        Cap relative to the median duration (default 2); ``None``: no cap.

    Returns
    -------
    float
        Seconds, clamped to [0.5 s, 10 s].
    """
    if len(n_frames) == 0:
        raise ParameterError("cannot choose clip_seconds from zero clips")
    if not 0 <= percentile <= 100:
        raise ParameterError(f"percentile={percentile!r} must be in [0, 100]")
    if median_ratio is not None and not median_ratio > 0:
        raise ParameterError(f"median_ratio={median_ratio!r} must be positive or None")
    durations = np.asarray(n_frames, dtype=np.float64) / frame_rate
    seconds = np.percentile(durations, percentile)
    if median_ratio is not None:
        seconds = min(seconds, median_ratio * np.median(durations))
    return float(np.clip(seconds, *CLIP_SECONDS_RANGE))


def padding_share(n_frames: Sequence[int], *, clip_frames: int) -> float:
    """Share of padding in the input when every clip is cropped/padded to ``clip_frames``."""
    t = np.asarray(n_frames, dtype=np.float64)
    if t.size == 0:
        raise ParameterError("padding_share of zero clips")
    return float(1.0 - np.minimum(t, clip_frames).mean() / clip_frames)


def bucket_from_data(n_frames: Sequence[int], *, clip_frames: int) -> bool:
    """Whether to bucket by default: padding to the crop would exceed :data:`BUCKET_PADDING_SHARE`."""
    return padding_share(n_frames, clip_frames=clip_frames) > BUCKET_PADDING_SHARE


class ClipDataset(torch.utils.data.Dataset):
    """Standardized features and targets; sequence clips are randomly cropped/padded.

    In-memory clips become contiguous float32 torch tensors once, here
    (standardized, pinned when ``pin_memory``); clips still in the cache
    (a :class:`~soundclass.extraction.stored.StoredFeatures`) are read,
    standardized and dropped by every batch that uses them, so the dataset
    holds no clip (``clips`` is ``None``) and memory is bounded by the batch.
    Both give the same batches.  A batch (:meth:`__getitems__`, what the
    ``DataLoader`` calls) is one preallocated tensor filled by slice copies.
    The crop of item ``i`` in epoch ``e`` starts at an offset drawn from
    ``np.random.default_rng(derive_seed(seed, e, i))`` (exactly as
    :func:`soundclass.dsp.augment.crop_or_pad` draws it), so it does not
    depend on the order, the worker or the process that draws it.  Padding
    repeats each row's minimum of the standardized clip (the silence level of
    a dB feature).

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i) or (n_features,)], or StoredFeatures
        Raw, or already standardized when ``norm_mean`` is ``None``.
    targets : sequence of int
    clip_frames : int or None
        Window length of sequence models (``None`` for vector models).
    seed : int
    pad_to_batch : bool
        Crop/pad each batch to its own longest clip, at most ``clip_frames``
        (with :class:`BucketBatchSampler`, padding stays small); ``False``
        pads every batch to ``clip_frames``.  Single items (``ds[i]``) always
        have ``clip_frames`` frames.
    pin_memory : bool
        Pin the clip tensors (for a CUDA device; in-memory clips only).
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
        Standardization applied to every clip
        (:func:`soundclass.inference.predictor.standardize`).
    """

    def __init__(self, features: Sequence[np.ndarray], targets: Sequence[int], *,
                 clip_frames: int | None, seed: int, pad_to_batch: bool = False, pin_memory: bool = False,
                 norm_mean: np.ndarray | None = None, norm_std: np.ndarray | None = None):
        if len(features) != len(targets):
            raise ParameterError(f"{len(features)} features but {len(targets)} targets")
        self.norm_mean, self.norm_std = norm_mean, norm_std
        self.stored = features if isinstance(features, StoredFeatures) else None
        if self.stored is not None:  # read per batch: no clip held here
            self.clips, self.fills = None, None
            self.shapes = feature_shapes(features)
        else:
            clips = [self._tensor(f) for f in features]
            self.clips = [c.pin_memory() for c in clips] if pin_memory else clips
            # (n_features, 1) per-row minimum of every sequence clip: its padding value
            self.fills = [c.amin(dim=1, keepdim=True) if c.ndim == 2 and c.shape[1] > 0 else None
                          for c in self.clips]
            self.shapes = [tuple(c.shape) for c in self.clips]
        self.lengths = np.array([s[1] if len(s) == 2 else 1 for s in self.shapes], dtype=np.int64)
        self.targets = np.asarray(targets, dtype=np.int64)
        self._targets_t = torch.from_numpy(self.targets)
        self.clip_frames = clip_frames
        self.pad_to_batch = bool(pad_to_batch)
        self.seed = int(seed)
        self.epoch = 0

    def _tensor(self, f: np.ndarray) -> torch.Tensor:
        """One clip, standardized, as a contiguous float32 tensor."""
        x = standardize(f, norm_mean=self.norm_mean, norm_std=self.norm_std)
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))

    def _clip(self, i: int) -> torch.Tensor:
        """Item ``i``'s standardized clip (read from the cache when stored)."""
        return self.clips[i] if self.clips is not None else self._tensor(self.stored[i])

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.shapes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = int(i)
        x = self._clip(i)
        if x.ndim == 2 and self.clip_frames is not None:
            out = torch.empty((x.shape[0], self.clip_frames), dtype=torch.float32)
            self._crop_into(out, i, x)
            x = out  # (n_features, clip_frames)
        return x, int(self.targets[i])

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``indices``: ``x`` [shape=(B, n_features, L) or (B, n_features)], ``y`` (B,)."""
        idx = [int(i) for i in indices]
        y = self._targets_t[idx]
        first = self.shapes[idx[0]]
        if len(first) != 2 or self.clip_frames is None:
            return torch.stack([self._clip(i) for i in idx]), y
        length = self.clip_frames
        if self.pad_to_batch:
            length = int(min(length, self.lengths[idx].max()))
        out = torch.empty((len(idx), first[0], length), dtype=torch.float32)  # (B, n_features, L)
        for row, i in enumerate(idx):
            self._crop_into(out[row], i, self._clip(i))  # a stored clip is dropped after its copy
        return out, y

    def _crop_into(self, out: torch.Tensor, i: int, x: torch.Tensor) -> None:
        """Write item ``i``'s (clip ``x``'s) random crop / placement into ``out`` [shape=(n_features, L)]."""
        length = out.shape[1]
        n = x.shape[1]
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, i))
        offset = int(rng.integers(0, abs(n - length) + 1))
        if n >= length:
            out.copy_(x[:, offset : offset + length])
        else:
            fill = self.fills[i] if self.fills is not None else x.amin(dim=1, keepdim=True)
            out.copy_(fill.expand(-1, length))
            out[:, offset : offset + n] = x


def _batch_as_is(batch: Any) -> Any:
    """``collate_fn`` of a dataset whose ``__getitems__`` already returns the batch."""
    return batch


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of clips of similar length, in a seeded, shuffled order.

    Each epoch takes the index stream of ``sampler`` (shuffled, class-balanced
    or one rank's share), drops its tail to whole batches when ``drop_last``,
    and, with ``bucket``, cuts it into pools of ``pool`` batches; each pool
    is sorted by ``log(length)`` plus a uniform jitter of +-``jitter`` (so
    near-equal lengths mix differently every epoch) and cut into batches;
    the batches of the epoch are then shuffled.  Every draw comes from
    ``derive_seed(seed, epoch, 'buckets')``.  Without ``bucket`` the stream
    is cut into batches in order (a plain ``BatchSampler``).

    Parameters
    ----------
    sampler : torch.utils.data.Sampler
    lengths : sequence of int
        Frames of every item of the dataset.
    batch_size : int
    drop_last : bool
    seed : int
    bucket : bool
    pool : int
    jitter : float
    """

    def __init__(self, sampler: torch.utils.data.Sampler, lengths: Sequence[int], *, batch_size: int,
                 drop_last: bool, seed: int, bucket: bool = True, pool: int = BUCKET_POOL,
                 jitter: float = 0.1):
        self.sampler = sampler
        self.log_lengths = np.log(np.maximum(np.asarray(lengths, dtype=np.float64), 1.0))
        self.batch_size, self.drop_last = int(batch_size), bool(drop_last)
        self.seed, self.bucket, self.pool, self.jitter = int(seed), bool(bucket), int(pool), float(jitter)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reseed this sampler and the index stream below it for ``epoch``."""
        self.epoch = int(epoch)
        inner = self.sampler
        if hasattr(inner, "set_epoch"):
            inner.set_epoch(epoch)
        elif getattr(inner, "generator", None) is not None:
            inner.generator.manual_seed(derive_seed(self.seed, epoch, "sampler"))

    def __len__(self) -> int:
        n, b = len(self.sampler), self.batch_size
        return n // b if self.drop_last else math.ceil(n / b)

    def __iter__(self):
        order = np.fromiter((int(i) for i in self.sampler), dtype=np.int64)
        b = self.batch_size
        if self.drop_last:
            order = order[: len(order) - len(order) % b]
        if not self.bucket:
            yield from (order[s : s + b].tolist() for s in range(0, len(order), b))
            return
        rng = np.random.default_rng(derive_seed(self.seed, self.epoch, "buckets"))
        batches = []
        step = b * self.pool
        for s in range(0, len(order), step):
            chunk = order[s : s + step]
            keys = self.log_lengths[chunk] + rng.uniform(-self.jitter, self.jitter, size=chunk.size)
            chunk = chunk[np.argsort(keys, kind="stable")]
            batches.extend(chunk[t : t + b].tolist() for t in range(0, chunk.size, b))
        for k in rng.permutation(len(batches)):
            yield batches[k]


def make_loaders(
    features: Sequence[np.ndarray],
    targets: Sequence[int],
    *,
    config: TrainConfig,
    n_classes: int,
    clip_frames: int | None,
    pin_memory: bool = False,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
) -> DataLoader:
    """The training ``DataLoader`` (validation needs none: it runs on whole clips).

    The index stream is a ``DistributedSampler`` under ``torchrun``, a
    ``WeightedRandomSampler`` for ``balance='sampler'``, else a shuffling
    ``RandomSampler``; a :class:`BucketBatchSampler` cuts it into batches
    (of similar lengths when ``config.bucket`` is ``True``, each then
    cropped/padded to its own longest clip); each is reseeded per epoch by
    :func:`set_epoch` (from ``train_one_epoch``).  The last partial batch is
    dropped when there is more than one batch (BatchNorm cannot train on a
    batch of one).  No worker processes: a batch is a few slice copies of
    tensors made once (or of the batch's clips read from the cache, for a
    :class:`~soundclass.extraction.stored.StoredFeatures`), far cheaper than a
    worker's inter-process transfer.  ``norm_mean``/``norm_std`` standardize
    every clip (see :class:`ClipDataset`).
    """
    bucket = config.bucket is True
    dataset = ClipDataset(features, targets, clip_frames=clip_frames, seed=config.seed,
                          pad_to_batch=bucket, pin_memory=pin_memory, norm_mean=norm_mean, norm_std=norm_std)
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
    batches = BucketBatchSampler(sampler, dataset.lengths, batch_size=config.batch_size,
                                 drop_last=per_rank > config.batch_size, seed=config.seed,
                                 bucket=bucket and clip_frames is not None)
    return DataLoader(dataset, batch_sampler=batches, collate_fn=_batch_as_is, num_workers=0)


def set_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    """Reseed the crops and the batches (and the sampler below them) of ``loader`` for ``epoch``."""
    loader.dataset.set_epoch(epoch)
    sampler = loader.batch_sampler if isinstance(loader.batch_sampler, BucketBatchSampler) else loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif getattr(sampler, "generator", None) is not None:
        sampler.generator.manual_seed(derive_seed(seed, epoch, "sampler"))
