"""Training: one config dataclass and an explicit loop in small functions.

The pieces, in the order :func:`train` uses them::

    resolve_config     dataclass defaults < model_spec(name).train < user values, validated
    feature_config     the model's FeatureConfig with the user's overrides
    get_features       through the feature cache; failed files are reported and skipped
    holdout            grouped when groups exist; a leakage warning otherwise
    fit                standardization stats (train part only), clip length, model,
                       pretrained backbone (``config.pretrained``, see
                       :func:`load_pretrained_weights`), optimizer, LR schedule,
                       then per epoch:
                         train_one_epoch -> validate -> EarlyStopping ->
                         checkpoint/ (best), last/ (resumable), history.json

Determinism: every random draw of epoch ``e`` comes from seeds derived from
``(config.seed, e)`` (model init, sampler order, crops, SpecAugment, mixup,
dropout), so the same seed gives the same history and weights, and a run
resumed from ``last/`` after epoch ``k`` continues exactly like an
uninterrupted one.

Distributed training (``torchrun``) is used when ``WORLD_SIZE`` is set; see
:mod:`soundclass.training.distributed`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler

from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.data.dataset import Dataset, Item, assign_groups
from soundclass.dsp import augment
from soundclass.errors import CheckpointError, DatasetError, ParameterError
from soundclass.inference.checkpoint import (
    STATE_META_NAME,
    capture_rng_state,
    load_checkpoint,
    load_training_state,
    restore_rng_state,
    save_checkpoint,
    save_training_state,
    unwrap_model,
)
from soundclass.inference.predictor import predict_logits, softmax, standardize
from soundclass.training import distributed as dist

__all__ = [
    "DEFAULTS",
    "TrainConfig",
    "PRETRAINED_MODELS",
    "resolve_config",
    "feature_config",
    "check_pretrained",
    "load_pretrained_weights",
    "derive_seed",
    "class_weights",
    "sample_weights",
    "norm_stats",
    "clip_seconds_from_data",
    "ClipDataset",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "train_one_epoch",
    "validate",
    "EarlyStopping",
    "FitResult",
    "fit",
    "TrainResult",
    "train",
]

logger = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "constant", "none")  # 'none' = 'constant' without warmup
BALANCES = ("weights", "sampler", "none")
MONITORS = ("macro_f1", "loss")
CLIP_SECONDS_RANGE = (0.5, 10.0)
CLIP_PERCENTILE = 90.0

# The lowest layer of the resolution order; a model spec's ``train`` dict and
# then the user's non-None values override these.
DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "batch_size": 32,
    "lr": 1e-3,
    "weight_decay": 1e-2,
    "optimizer": "adamw",
    "scheduler": "onecycle",
    "warmup": 0.1,
    "patience": 10,
    "monitor": "macro_f1",
    "mixup_alpha": 0.0,
    "spec_augment": False,
    "freq_warp": 0.0,
    "time_stretch": 0.0,
    "label_smoothing": 0.0,
    "balance": "weights",
}

# Fields that only say how to run, not what is trained; a resumed run may change them.
_RUNTIME_FIELDS = ("cache_dir", "n_jobs", "threads", "device", "epochs", "patience")

# Models in the parameter layout of the public PANNs checkpoints, which
# ``TrainConfig.pretrained`` can initialise (soundclass.models.pretrained).
PRETRAINED_MODELS = ("cnn6", "cnn10", "cnn14")
# Front-end settings the PANNs weights were trained on.  ``kind``, ``n_mels``
# and ``deltas`` decide the input shape, so other values make the weights
# meaningless and are refused; the others only shift the input distribution
# (a warning when the backbone is loaded).
_PANNS_INPUT = {"kind": "logmel", "n_mels": 64, "deltas": 0}
_PANNS_FRONT_END = {"sr": 32000, "n_fft": 1024, "hop_length": 320, "fmin": 50.0, "fmax": 14000.0,
                    "top_db": None}
# Entries written next to the TrainConfig fields in config.json / model.json.
_DERIVED_KEYS = ("feature_config", "pretrained_from")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; ``None`` means "the model's default".

    Parameters
    ----------
    model : str
        Registry name (``soundclass.models.list_models()``).
    model_kwargs : dict
        Extra architecture arguments for ``create_model``.
    epochs, batch_size : int or None
    lr, weight_decay : float or None
        Peak learning rate and decoupled weight decay.
    optimizer : {'adamw', 'adam', 'sgd'} or None
    scheduler : {'onecycle', 'cosine', 'constant', 'none'} or None
        Stepped per batch. ``'cosine'``: linear warmup then cosine decay to 0;
        ``'onecycle'``: ``torch.optim.lr_scheduler.OneCycleLR`` with
        ``pct_start=warmup``; ``'constant'``: linear warmup then constant;
        ``'none'``: constant, no warmup.
    warmup : float or None
        Fraction of all steps spent warming up, in [0, 1).
    patience : int or None
        Early stopping after this many epochs without improvement of
        ``monitor``; 0 disables it.
    monitor : {'macro_f1', 'loss'} or None
        Validation quantity that selects the best checkpoint.
    seed : int
        Seeds every random draw (init, order, crops, augmentation, split).
    clip_seconds : float or None
        Training window of sequence models; ``None``: the model spec's value,
        else the 90th percentile of the training clips' durations clamped to
        [0.5 s, 10 s].
    mixup_alpha : float or None
        Beta(alpha, alpha) mixup; 0 disables.
    spec_augment : bool or None
        Time/frequency masking of training windows.
    freq_warp : float or None
        Maximum relative random warp of the frequency axis of each training
        window (:func:`soundclass.dsp.augment.freq_warp`), in [0, 1); 0 disables.
    time_stretch : float or None
        Maximum relative random time stretch of each training window
        (:func:`soundclass.dsp.augment.time_stretch`), in [0, 1); 0 disables.
    label_smoothing : float or None
        In [0, 1).
    balance : {'weights', 'sampler', 'none'} or None
        Class-weighted loss, a ``WeightedRandomSampler``, or nothing.
    val_size : float
        Validation fraction in [0, 1), or a whole number of clips >= 1; 0
        trains on everything (the last epoch is the checkpoint).
    group_pattern : str or None
        Regex giving each file's group (``dataset.assign_groups``).
    feature : dict
        Overrides of the model's FeatureConfig fields, e.g. ``{'n_mels': 64}``.
    grad_clip : float or None
        Max gradient norm; ``None`` disables clipping.
    cache_dir : str or None
        Feature cache folder (``None``: no disk cache).
    n_jobs : int or None
        Feature extraction workers.
    threads : int or None
        ``torch.set_num_threads`` for training.
    device : str or None
        ``'cpu'``, ``'cuda'``, ...; ``None``: CUDA when available.
    pretrained : str or None
        A PANNs checkpoint file (``.pth``, e.g. ``Cnn14_mAP=0.431.pth``) whose
        backbone initialises the model right after it is built (models
        :data:`PRETRAINED_MODELS` only, with the 64-band log-mel input); read
        with ``torch.load(weights_only=True)``.  The run's checkpoints hold
        every weight afterwards, so they never need this file again.
    """

    model: str = "cnn"
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    weight_decay: float | None = None
    optimizer: str | None = None
    scheduler: str | None = None
    warmup: float | None = None
    patience: int | None = None
    monitor: str | None = None
    seed: int = 0
    clip_seconds: float | None = None
    mixup_alpha: float | None = None
    spec_augment: bool | None = None
    freq_warp: float | None = None
    time_stretch: float | None = None
    label_smoothing: float | None = None
    balance: str | None = None
    val_size: float = 0.2
    group_pattern: str | None = None
    feature: Mapping[str, Any] = field(default_factory=dict)
    grad_clip: float | None = None
    cache_dir: str | None = None
    n_jobs: int | None = None
    threads: int | None = None
    device: str | None = None
    pretrained: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs or {}))
        if isinstance(self.pretrained, os.PathLike):
            object.__setattr__(self, "pretrained", os.fspath(self.pretrained))
        object.__setattr__(self, "feature", dict(self.feature or {}))
        _validate(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """From a dict (e.g. ``config.json`` or a checkpoint's ``train_config``), rejecting unknown keys.

        The derived ``feature_config`` and ``pretrained_from`` entries written
        next to the fields are ignored.
        """
        data = {k: v for k, v in data.items() if k not in _DERIVED_KEYS}
        return config_from_dict(cls, data)


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _validate(c: TrainConfig) -> None:
    def check(name: str, ok: bool, must: str) -> None:
        value = getattr(c, name)
        if value is not None and not ok:
            raise ParameterError(f"{name}={value!r} must be {must}")

    def num(name: str) -> bool:
        return _is_num(getattr(c, name))

    if not isinstance(c.model, str) or not c.model:
        raise ParameterError(f"model={c.model!r} must be a registered model name")
    check("epochs", _is_int(c.epochs) and c.epochs > 0, "a positive integer")
    check("batch_size", _is_int(c.batch_size) and c.batch_size > 0, "a positive integer")
    check("lr", num("lr") and c.lr > 0 and math.isfinite(c.lr), "a positive number")
    check("weight_decay", num("weight_decay") and c.weight_decay >= 0, "a non-negative number")
    check("optimizer", c.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}")
    check("scheduler", c.scheduler in SCHEDULERS, f"one of {SCHEDULERS}")
    check("warmup", num("warmup") and 0 <= c.warmup < 1, "in [0, 1)")
    check("patience", _is_int(c.patience) and c.patience >= 0, "a non-negative integer (0 disables)")
    check("monitor", c.monitor in MONITORS, f"one of {MONITORS}")
    check("seed", _is_int(c.seed) and c.seed >= 0, "a non-negative integer")
    check("clip_seconds", num("clip_seconds") and c.clip_seconds > 0, "a positive number or None")
    check("mixup_alpha", num("mixup_alpha") and c.mixup_alpha >= 0, "a non-negative number")
    check("spec_augment", isinstance(c.spec_augment, bool), "True or False")
    check("freq_warp", num("freq_warp") and 0 <= c.freq_warp < 1, "in [0, 1) (0 disables)")
    check("time_stretch", num("time_stretch") and 0 <= c.time_stretch < 1, "in [0, 1) (0 disables)")
    check("label_smoothing", num("label_smoothing") and 0 <= c.label_smoothing < 1, "in [0, 1)")
    check("balance", c.balance in BALANCES, f"one of {BALANCES}")
    check("val_size", num("val_size") and (0 <= c.val_size < 1 or (c.val_size >= 1 and float(c.val_size).is_integer())),
          "a fraction in [0, 1) or a whole number of clips >= 1")
    check("grad_clip", num("grad_clip") and c.grad_clip > 0, "a positive number or None")
    check("n_jobs", _is_int(c.n_jobs) and c.n_jobs != 0, "a non-zero integer or None")
    check("threads", _is_int(c.threads) and c.threads > 0, "a positive integer or None")
    check("group_pattern", isinstance(c.group_pattern, str) and c.group_pattern != "", "a regex or None")
    check("cache_dir", isinstance(c.cache_dir, (str, os.PathLike)), "a folder path or None")
    check("device", isinstance(c.device, str), "a torch device name or None")
    check("pretrained", isinstance(c.pretrained, str) and c.pretrained != "", "a checkpoint file path or None")
    if c.val_size is None:
        raise ParameterError("val_size=None must be a number in [0, 1)")
    for key in c.model_kwargs:
        if not isinstance(key, str):
            raise ParameterError(f"model_kwargs key {key!r} must be a string")


def resolve_config(config: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """Fill every ``None`` training field: :data:`DEFAULTS` < model spec < user.

    Parameters
    ----------
    config : TrainConfig, optional
        The user's config (default: ``TrainConfig()``).
    **overrides
        Field changes applied on top of ``config`` first.

    Returns
    -------
    TrainConfig
        Validated, with no ``None`` left among the keys of :data:`DEFAULTS`.
        ``clip_seconds`` stays ``None`` when neither the user nor the spec
        sets it (:func:`fit` decides from the data).

    Raises
    ------
    ParameterError
        Unknown model, a spec default of the wrong kind, an invalid value, or
        ``pretrained`` with a model or feature it cannot initialise
        (:func:`check_pretrained`).
    """
    from soundclass.models import model_spec

    config = config or TrainConfig()
    if overrides:
        config = config.replace(**overrides)
    spec = model_spec(config.model)
    filled = {}
    for key, default in DEFAULTS.items():
        user = getattr(config, key)
        filled[key] = user if user is not None else spec.train.get(key, default)
    if config.clip_seconds is None and spec.clip_seconds is not None:
        filled["clip_seconds"] = float(spec.clip_seconds)
    resolved = config.replace(**filled)
    feature_config(resolved)  # validates the feature overrides
    check_pretrained(resolved)
    return resolved


def feature_config(config: TrainConfig) -> FeatureConfig:
    """The model spec's :class:`FeatureConfig` with ``config.feature`` overrides applied."""
    from soundclass.models import model_spec

    spec = model_spec(config.model)
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    unknown = sorted(set(config.feature) - names)
    if unknown:
        raise ParameterError(f"unknown feature override(s) {unknown}; choose from {sorted(names)}")
    if "pooling" in config.feature and config.feature["pooling"] != spec.feature.pooling:
        raise ParameterError(
            f"feature pooling={config.feature['pooling']!r} does not fit model {config.model!r} "
            f"({spec.input} input needs pooling={spec.feature.pooling!r})"
        )
    return spec.feature.replace(**config.feature)


def _config_json(config: TrainConfig) -> dict[str, Any]:
    out = config_to_dict(config)
    out["feature_config"] = config_to_dict(feature_config(config))
    return out


def check_pretrained(config: TrainConfig) -> None:
    """Refuse ``config.pretrained`` with a model or feature the PANNs weights cannot initialise.

    Raises
    ------
    ParameterError
        The model is not one of :data:`PRETRAINED_MODELS`, or the feature
        overrides change the input the weights expect (``kind``, ``n_mels``,
        ``deltas``).  Only the config is checked, not the file.
    """
    if config.pretrained is None:
        return
    if config.model not in PRETRAINED_MODELS:
        raise ParameterError(
            f"pretrained={config.pretrained!r} needs a PANNs-layout model; model={config.model!r} "
            f"is not one (choose from {', '.join(PRETRAINED_MODELS)})"
        )
    feature = feature_config(config)
    for name, want in _PANNS_INPUT.items():
        value = getattr(feature, name)
        if value != want:
            raise ParameterError(
                f"feature {name}={value!r} makes the pretrained weights of {config.pretrained!r} "
                f"meaningless (PANNs {config.model} takes {name}={want!r}); drop the override "
                "or train without pretrained"
            )


def _front_end_differences(feature: FeatureConfig) -> list[str]:
    """``name=value (PANNs: value)`` for each front-end setting that differs from PANNs'."""
    return [f"{name}={getattr(feature, name)!r} (PANNs: {want!r})"
            for name, want in _PANNS_FRONT_END.items() if getattr(feature, name) != want]


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_pretrained_weights(model: torch.nn.Module, config: TrainConfig) -> dict[str, Any] | None:
    """Initialise ``model``'s backbone from ``config.pretrained`` (in place), as :func:`fit` does.

    Parameters
    ----------
    model : torch.nn.Module
        Freshly built by ``create_model(config.model, ...)``.
    config : TrainConfig
        Its ``pretrained`` file (``None``: nothing happens) is read with
        :func:`soundclass.models.load_pretrained` (``torch.load(weights_only=True)``;
        the PANNs front end and AudioSet head are dropped, every backbone tensor
        must match by name and shape; our head ``fc`` keeps its fresh init).

    Returns
    -------
    dict or None
        Where the weights came from, as recorded in ``config.json`` and the
        checkpoints' ``train_config['pretrained_from']``: ``path`` (absolute),
        ``sha256``, ``bytes``, ``n_loaded`` (every model key but the
        ``reinitialised`` ones, which were left as built) and ``skipped`` (file
        keys not used).  Compact on purpose: the HTML report shows it.

    Raises
    ------
    ParameterError
        See :func:`check_pretrained`.
    CheckpointError
        Missing, unreadable or unsafe file, or a layout that does not fit the
        model; the message names the file.
    """
    from soundclass.models import load_pretrained

    if config.pretrained is None:
        return None
    check_pretrained(config)
    path = config.pretrained
    report = load_pretrained(unwrap_model(model), path)
    record = {
        "path": os.path.abspath(path),
        "sha256": _sha256(path),
        "bytes": os.path.getsize(path),
        "n_loaded": len(report.loaded),
        "skipped": list(report.skipped),
        "reinitialised": list(report.missing),
    }
    logger.info("%s: loaded %d backbone tensors into %s; skipped %d (front end, AudioSet head); "
                "re-initialised %s", path, len(report.loaded), config.model, len(report.skipped),
                ", ".join(report.missing) or "nothing")
    differences = _front_end_differences(feature_config(config))
    if differences:
        logger.warning("%s: the feature differs from the PANNs front end the weights were trained on: %s",
                       path, ", ".join(differences))
    return record


def _check_pretrained_file(config: TrainConfig) -> None:
    """Fail before feature extraction when the pretrained file is not there."""
    if config.pretrained is not None and not os.path.isfile(config.pretrained):
        raise CheckpointError(f"{config.pretrained}: no such checkpoint file (pretrained)")


# --------------------------------------------------------------------------- data


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
    ``RandomSampler``; each is reseeded per epoch by :func:`train_one_epoch`.
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


def _set_epoch(loader: DataLoader, epoch: int, seed: int) -> None:
    loader.dataset.set_epoch(epoch)
    sampler = loader.sampler
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    elif getattr(sampler, "generator", None) is not None:
        sampler.generator.manual_seed(derive_seed(seed, epoch, "sampler"))


# --------------------------------------------------------------------------- optimization


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD (momentum 0.9, Nesterov) over the trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=0.9, nesterov=True)


def _warmup_cosine(step: int, *, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _warmup_constant(step: int, *, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, *, total_steps: int):
    """A per-batch LR schedule over ``total_steps`` optimizer steps (see :class:`TrainConfig`)."""
    from functools import partial

    total_steps = max(1, int(total_steps))
    warmup_steps = int(round(config.warmup * total_steps))
    # OneCycleLR needs >= 2 warmup steps and >= 2 annealing steps (else it divides by zero)
    if config.scheduler == "onecycle" and total_steps >= 4:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps,
            pct_start=min(max(config.warmup, 2.0 / total_steps), 1.0 - 2.0 / total_steps),
            anneal_strategy="cos", cycle_momentum=config.optimizer == "sgd",
        )
    if config.scheduler in ("cosine", "onecycle"):
        fn = partial(_warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps)
    elif config.scheduler == "constant" and warmup_steps > 0:
        fn = partial(_warmup_constant, warmup_steps=warmup_steps)
    else:
        fn = partial(_warmup_constant, warmup_steps=0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def _loss(logits: torch.Tensor, target: torch.Tensor, *, weight: torch.Tensor | None,
          label_smoothing: float) -> torch.Tensor:
    """Cross-entropy with hard (``(B,)`` int) or soft (``(B, n_classes)``) targets.

    With class weights both forms are normalized by the weight of the batch's
    targets, so a weighted soft target equal to a one-hot one gives the same loss.
    """
    if target.ndim == 1:
        return F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing)
    per_item = F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing,
                               reduction="none")
    if weight is None:
        return per_item.mean()
    return per_item.sum() / (target * weight).sum()


def train_one_epoch(
    model: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    *,
    epoch: int,
    seed: int,
    class_weight: np.ndarray | None = None,
    label_smoothing: float = 0.0,
    mixup_alpha: float = 0.0,
    spec_augment: bool = False,
    freq_warp: float = 0.0,
    time_stretch: float = 0.0,
    grad_clip: float | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``: forward, loss, backward, step, LR step per batch.

    Parameters
    ----------
    model, loader, optimizer, scheduler
        As made by :func:`make_loaders`, :func:`make_optimizer`,
        :func:`make_scheduler` (``scheduler`` may be ``None``).
    epoch, seed : int
        Seed every random draw of this epoch (sampler, crops, augmentation,
        dropout) from ``(seed, epoch)``.
    class_weight : np.ndarray [shape=(n_classes,)], optional
        Class weights of the loss.
    label_smoothing, mixup_alpha, spec_augment, freq_warp, time_stretch, grad_clip
        See :class:`TrainConfig`.
    progress : bool
        Show a batch progress bar.

    Returns
    -------
    dict
        ``loss`` (mean training loss over items), ``lr`` (of the last step),
        ``n`` (items seen), ``seconds``.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    model.train()
    _set_epoch(loader, epoch, seed)
    torch.manual_seed(derive_seed(seed, epoch, "torch"))  # dropout etc.
    aug_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "augment"))
    mix_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "mixup"))
    # Own stream: turning the warps on or off leaves the other draws unchanged.
    warp_gen = torch.Generator().manual_seed(derive_seed(seed, epoch, "warp"))
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    total, n, lr = 0.0, 0, optimizer.param_groups[0]["lr"]
    for x, y in tqdm(loader, desc=f"epoch {epoch + 1}", leave=False, disable=not progress):
        x, y = x.to(device), y.to(device)  # (B, n_features, L) or (B, n_features); (B,)
        if freq_warp > 0 and x.ndim == 3:
            x = augment.freq_warp(x, max_warp=float(freq_warp), generator=warp_gen)
        if time_stretch > 0 and x.ndim == 3:
            x = augment.time_stretch(x, max_stretch=float(time_stretch), generator=warp_gen)
        if spec_augment and x.ndim == 3:
            x = augment.spec_augment(x, generator=aug_gen)
        if mixup_alpha > 0:
            x, y_a, y_b, lam = augment.mixup(x, y, alpha=float(mixup_alpha), generator=mix_gen)
            logits = model(x)  # (B, n_classes)
            target = augment.mix_targets(y_a, y_b, lam, n_classes=logits.shape[1],
                                         label_smoothing=label_smoothing).to(device)
            loss = _loss(logits, target, weight=weight, label_smoothing=0.0)
        else:
            logits = model(x)  # (B, n_classes)
            loss = _loss(logits, y, weight=weight, label_smoothing=label_smoothing)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"epoch {epoch + 1}: training loss became {loss.item()} (lower lr?)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(loss.detach()) * x.shape[0]
        n += x.shape[0]
    total, n = dist.all_reduce_sum([total, float(n)])  # over every rank when distributed
    return {"loss": total / max(n, 1.0), "lr": float(lr), "n": int(n), "seconds": time.perf_counter() - t0}


def validate(
    model: torch.nn.Module,
    features: Sequence[np.ndarray],
    targets: Sequence[int],
    *,
    classes: Sequence[str],
    input_kind: str,
    clip_frames: int | None,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Clip-level validation through :func:`soundclass.inference.predictor.predict_logits`.

    Returns
    -------
    dict
        ``loss`` (unweighted mean cross-entropy), ``accuracy``, ``macro_f1``,
        ``balanced_accuracy``, ``metrics`` (the full
        :func:`soundclass.evaluation.metrics.evaluate_predictions` dict) and ``proba``
        ``[shape=(N, n_classes)]``.
    """
    from soundclass.evaluation.metrics import evaluate_predictions

    logits = predict_logits(
        unwrap_model(model), features, input_kind=input_kind, clip_frames=clip_frames,
        norm_mean=norm_mean, norm_std=norm_std, batch_size=batch_size,
    )
    t = np.asarray(targets, dtype=np.int64)
    loss = float(F.cross_entropy(torch.from_numpy(logits).double(), torch.from_numpy(t)))
    proba = softmax(logits)
    metrics = evaluate_predictions(t, logits.argmax(axis=1), classes=classes, proba=proba)
    return {
        "loss": loss,
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "balanced_accuracy": metrics["balanced_accuracy"],
        "metrics": metrics,
        "proba": proba,
    }


class EarlyStopping:
    """Stop after ``patience`` epochs without improvement; remembers the best epoch.

    Parameters
    ----------
    patience : int
        0 never stops.
    mode : {'max', 'min'}
        Whether larger (macro-F1) or smaller (loss) is better.
    min_delta : float
        Improvement needed to count.
    """

    def __init__(self, patience: int, *, mode: str = "max", min_delta: float = 0.0):
        if mode not in ("max", "min"):
            raise ParameterError(f"mode={mode!r} must be 'max' or 'min'")
        if not _is_int(patience) or patience < 0:
            raise ParameterError(f"patience={patience!r} must be a non-negative integer")
        self.patience, self.mode, self.min_delta = int(patience), mode, float(min_delta)
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0

    def step(self, value: float, epoch: int) -> bool:
        """Record ``value`` of ``epoch``; ``True`` if it is a new best."""
        value = float(value)
        if math.isnan(value):
            better = False
        elif self.best is None:
            better = True
        elif self.mode == "max":
            better = value > self.best + self.min_delta
        else:
            better = value < self.best - self.min_delta
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, int(epoch), 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"patience": self.patience, "mode": self.mode, "min_delta": self.min_delta,
                "best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = state["best"]
        self.best_epoch = state["best_epoch"]
        self.bad_epochs = int(state["bad_epochs"])


# --------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` produced.

    ``history`` has one dict per epoch (``epoch``, ``train_loss``, ``val_loss``,
    ``val_accuracy``, ``val_macro_f1``, ``lr``, ``seconds``); ``val_proba`` are
    the best checkpoint's validation probabilities (``None`` without validation).
    ``model`` is the model after the last epoch (unwrapped, eval mode).  Under
    ``torchrun`` only rank 0 validates and records: on other ranks ``history``
    is empty and ``val_proba`` is ``None``.  ``pretrained_from`` is the record
    of :func:`load_pretrained_weights` (``None`` without ``config.pretrained``).
    """

    checkpoint_dir: Path
    last_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    config: TrainConfig
    clip_frames: int | None
    norm_mean: np.ndarray | None
    norm_std: np.ndarray | None
    val_proba: np.ndarray | None
    stopped_early: bool
    model: torch.nn.Module | None = None
    pretrained_from: Mapping[str, Any] | None = None


def _device(config: TrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _check_features(features: Sequence[np.ndarray], *, input_kind: str, n_features: int, what: str) -> None:
    want = 1 if input_kind == "vector" else 2
    for i, f in enumerate(features):
        if f.ndim != want or f.shape[0] != n_features:
            shape = f"({n_features},)" if want == 1 else f"({n_features}, t)"
            raise ParameterError(f"{what}[{i}] has shape {f.shape}; the model takes {shape}")


def fit(
    train_features: Sequence[np.ndarray],
    train_targets: Sequence[int],
    val_features: Sequence[np.ndarray],
    val_targets: Sequence[int],
    *,
    classes: Sequence[str],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    resume: bool = False,
) -> FitResult:
    """Train a registered model on cached features; the explicit loop.

    Parameters
    ----------
    train_features, val_features : sequence of np.ndarray
        Raw (unstandardized) features of ``feature_config(config)``:
        ``(n_features, t_i)`` per clip for sequence models, ``(n_features,)``
        for vector models.  ``val_features`` may be empty (no validation:
        the last epoch becomes the checkpoint).
    train_targets, val_targets : sequence of int
        Class indices into ``classes``.
    classes : sequence of str
    config : TrainConfig
        Resolved here (:func:`resolve_config`).
    out_dir : path
        Receives ``checkpoint/`` (best), ``last/`` (resumable) and ``history.json``.
    progress : bool
        tqdm bars (rank 0 only).
    resume : bool
        Continue from ``out_dir/last`` if it holds a training state (the
        weights then come from there, not from ``config.pretrained``).

    Returns
    -------
    FitResult

    Raises
    ------
    CheckpointError
        ``config.pretrained`` is missing, unreadable or does not fit the model.
    """
    from tqdm.auto import tqdm

    from soundclass.models import create_model, model_spec

    config = resolve_config(config)
    classes = tuple(str(c) for c in classes)
    n_classes = len(classes)
    if n_classes < 2:
        raise ParameterError(f"need at least 2 classes, got {n_classes}: {classes}")
    spec = model_spec(config.model)
    feature = feature_config(config)
    train_features = [np.asarray(f, dtype=np.float32) for f in train_features]
    val_features = [np.asarray(f, dtype=np.float32) for f in val_features]
    train_targets = np.asarray(train_targets, dtype=np.int64)
    val_targets = np.asarray(val_targets, dtype=np.int64)
    if len(train_features) != train_targets.size or len(val_features) != val_targets.size:
        raise ParameterError("features and targets have different lengths")
    if train_targets.size == 0:
        raise ParameterError("no training clips")
    for name, t in (("train_targets", train_targets), ("val_targets", val_targets)):
        if t.size and (t.min() < 0 or t.max() >= n_classes):
            raise ParameterError(f"{name} must be class indices in [0, {n_classes})")
    _check_features(train_features, input_kind=spec.input, n_features=feature.n_features, what="train_features")
    _check_features(val_features, input_kind=spec.input, n_features=feature.n_features, what="val_features")

    clip_frames = None
    if spec.input == "sequence":
        if config.clip_seconds is None:
            config = config.replace(clip_seconds=clip_seconds_from_data(
                [f.shape[1] for f in train_features], frame_rate=feature.frame_rate))
        clip_frames = max(1, int(round(config.clip_seconds * feature.frame_rate)))
    norm_mean = norm_std = None
    if spec.standardize:
        norm_mean, norm_std = norm_stats(train_features)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    ctx = dist.setup()
    device = dist.device_for(ctx, _device(config))
    is_main = ctx.rank == 0

    out = Path(out_dir)
    ckpt_dir, last_dir = out / "checkpoint", out / "last"
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(derive_seed(config.seed, "init"))
    model = create_model(config.model, n_classes=n_classes, n_features=feature.n_features,
                         **config.model_kwargs)
    resuming = resume and (last_dir / STATE_META_NAME).is_file()
    pretrained_from = None if resuming else load_pretrained_weights(model, config)
    model = model.to(device)
    std_train = [standardize(f, norm_mean=norm_mean, norm_std=norm_std) for f in train_features]
    loader = make_loaders(std_train, train_targets, config=config, n_classes=n_classes, clip_frames=clip_frames)
    optimizer = make_optimizer(model, config)
    scheduler = make_scheduler(optimizer, config, total_steps=config.epochs * len(loader))
    weight = class_weights(train_targets, n_classes=n_classes) if config.balance == "weights" else None
    has_val = len(val_features) > 0
    stopper = EarlyStopping(config.patience if has_val else 0,
                            mode="max" if (config.monitor == "macro_f1" or not has_val) else "min")
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resuming:
        start_epoch, saved_extra = _resume(last_dir, config, model, optimizer, scheduler, stopper, history)
        pretrained_from = saved_extra.get("pretrained_from")
    run_config = _config_json(config)
    if config.pretrained is not None:
        run_config["pretrained_from"] = pretrained_from
    train_model = dist.wrap_model(model, device=device)

    def save_model(folder: Path, metrics: Mapping[str, Any]) -> None:
        save_checkpoint(folder, model, model_name=config.model, model_kwargs=config.model_kwargs,
                        feature=feature, classes=classes, train_config=run_config,
                        norm_mean=norm_mean, norm_std=norm_std, clip_frames=clip_frames,
                        metrics=metrics)

    if is_main:
        _write_json(out / "config.json", run_config)
    bar = tqdm(total=config.epochs, initial=start_epoch, desc=f"train {config.model}", unit="epoch",
               disable=not (progress and is_main))
    restore_determinism = _use_deterministic()
    try:
        stopped = stopper.should_stop
        epoch = start_epoch
        while epoch < config.epochs and not stopped:
            tr = train_one_epoch(
                train_model, loader, optimizer, scheduler, epoch=epoch, seed=config.seed,
                class_weight=weight, label_smoothing=config.label_smoothing,
                mixup_alpha=config.mixup_alpha, spec_augment=config.spec_augment,
                freq_warp=config.freq_warp, time_stretch=config.time_stretch,
                grad_clip=config.grad_clip, device=device, progress=progress and is_main,
            )
            dist.sync_buffers(model)  # BatchNorm statistics of rank 0 everywhere
            if is_main:  # validation and files on rank 0 only (see soundclass.training.distributed)
                va = (validate(model, val_features, val_targets, classes=classes, input_kind=spec.input,
                               clip_frames=clip_frames, norm_mean=norm_mean, norm_std=norm_std,
                               batch_size=max(64, config.batch_size))
                      if has_val else None)
                row = _history_row(epoch, tr, va)
                history.append(row)
                if va is not None:
                    improved = stopper.step(va[config.monitor], epoch)
                else:  # no validation: the latest epoch is the best
                    improved = stopper.step(float(epoch), epoch)
                summary = _summary(va, epoch)
                if improved:
                    save_model(ckpt_dir, summary)
                save_model(last_dir, summary)
                save_training_state(last_dir, epoch=epoch, model=model, optimizer=optimizer,
                                    scheduler=scheduler, rng_state=capture_rng_state(),
                                    extra={"history": history, "early_stopping": stopper.state_dict(),
                                           "config": _config_json(config),
                                           "pretrained_from": pretrained_from})
                _write_json(out / "history.json", history)
                bar.set_postfix(loss=f"{tr['loss']:.3f}", val_loss=f"{row['val_loss']:.3f}",
                                val_f1=f"{row['val_macro_f1']:.3f}")
                bar.update(1)
            stopped = dist.broadcast_flag(stopper.should_stop)
            dist.barrier()
            epoch += 1
    finally:
        restore_determinism()
        bar.close()

    val_proba = None
    if is_main and has_val and (ckpt_dir / "model.json").is_file():
        best = load_checkpoint(ckpt_dir, device=device)
        val_proba = softmax(predict_logits(best.model, val_features, input_kind=best.input,
                                           clip_frames=best.clip_frames, norm_mean=best.norm_mean,
                                           norm_std=best.norm_std, batch_size=max(64, config.batch_size)))
    return FitResult(
        checkpoint_dir=ckpt_dir, last_dir=last_dir, history=history,
        best_epoch=-1 if stopper.best_epoch is None else int(stopper.best_epoch), config=config,
        clip_frames=clip_frames, norm_mean=norm_mean, norm_std=norm_std, val_proba=val_proba,
        stopped_early=stopped and epoch < config.epochs,
        model=model.eval(), pretrained_from=pretrained_from,
    )


def _use_deterministic():
    """Ask torch for deterministic kernels (warn-only); returns a function restoring the old setting."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)

    def restore() -> None:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)

    return restore


def _history_row(epoch: int, tr: Mapping[str, Any], va: Mapping[str, Any] | None) -> dict[str, Any]:
    nan = float("nan")
    return {
        "epoch": epoch,
        "train_loss": tr["loss"],
        "val_loss": va["loss"] if va else nan,
        "val_accuracy": va["accuracy"] if va else nan,
        "val_macro_f1": va["macro_f1"] if va else nan,
        "lr": tr["lr"],
        "seconds": tr["seconds"],
    }


def _summary(va: Mapping[str, Any] | None, epoch: int) -> dict[str, Any]:
    """Scalar validation metrics for ``model.json``."""
    out: dict[str, Any] = {"epoch": epoch}
    if va is not None:
        out.update({k: v for k, v in va["metrics"].items()
                    if k not in ("per_class", "confusion_matrix", "classes")})
        out["loss"] = va["loss"]
    return out


def _comparable(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _RUNTIME_FIELDS}


def _resume(last_dir: Path, config: TrainConfig, model, optimizer, scheduler, stopper,
            history) -> tuple[int, dict[str, Any]]:
    """Load ``last_dir``'s training state into the given objects; the next epoch to run and the state's extras."""
    state = load_training_state(last_dir)
    saved = state.extra.get("config", {})
    now = json.loads(json.dumps(_config_json(config)))
    if _comparable(saved) != _comparable(now):
        diff = sorted(k for k in set(saved) | set(now) if _comparable(saved).get(k) != _comparable(now).get(k))
        raise ParameterError(
            f"{last_dir}: cannot resume, the config differs in {', '.join(diff)}; "
            "use a new output folder or the same config"
        )
    if saved.get("epochs") != now.get("epochs"):
        raise ParameterError(
            f"{last_dir}: cannot resume with epochs={now.get('epochs')} (saved run has "
            f"epochs={saved.get('epochs')}; the LR schedule depends on it)"
        )
    model.load_state_dict(state.model_state)
    optimizer.load_state_dict(state.optimizer_state)
    if scheduler is not None and state.scheduler_state is not None:
        scheduler.load_state_dict(state.scheduler_state)
    stopper.load_state_dict(state.extra["early_stopping"])
    history.extend(state.extra.get("history", []))
    restore_rng_state(state.rng_state)
    return state.epoch + 1, dict(state.extra)


# --------------------------------------------------------------------------- train


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` produced (files are in the run folder).

    ``pretrained_from`` says where the initial backbone came from
    (:func:`load_pretrained_weights`; ``None`` without ``config.pretrained``).
    """

    checkpoint_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    classes: tuple[str, ...]
    val_items: tuple[Item, ...]
    val_proba: np.ndarray | None
    failures: list[Any]
    warnings: list[str]
    pretrained_from: Mapping[str, Any] | None = None


def train(
    dataset: Dataset,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    progress: bool = True,
    executor: Any = None,
    resume: bool = False,
) -> TrainResult:
    """Train a model on a labelled dataset, end to end.

    Parameters
    ----------
    dataset : Dataset
        From :func:`soundclass.data.dataset.discover`; every item must be labelled.
    config : TrainConfig
        Resolved here (defaults < model spec < user values).
    out_dir : path
        The run folder: ``config.json``, ``split.json``, ``history.json``,
        ``checkpoint/`` (best), ``last/`` (resumable).
    progress : bool
        Progress bars for feature extraction and training.
    executor : concurrent.futures.Executor, optional
        For feature extraction (see :mod:`soundclass.util.executors`).
    resume : bool
        Continue an interrupted run in ``out_dir``.

    Returns
    -------
    TrainResult
        Files that could not be decoded are listed in ``failures`` and skipped.

    Raises
    ------
    CheckpointError
        ``config.pretrained`` is missing (checked before feature extraction),
        unreadable or does not fit the model.
    """
    from soundclass.data.splits import holdout, leakage_warning
    from soundclass.extraction.cache import get_features

    config = resolve_config(config)
    feature = feature_config(config)
    if not (resume and (Path(out_dir) / "last" / STATE_META_NAME).is_file()):
        _check_pretrained_file(config)
    ctx = dist.setup()
    notes: list[str] = []
    if config.group_pattern:
        dataset = assign_groups(dataset, config.group_pattern)
    classes = tuple(dataset.classes)
    targets_all = dataset.targets
    if ctx.active and config.cache_dir is not None and not ctx.is_main:
        dist.barrier()  # rank 0 fills the cache first; the others then read it
    features, failures = get_features(dataset.paths, feature, cache_dir=config.cache_dir,
                                      n_jobs=config.n_jobs, executor=executor,
                                      progress=progress and ctx.is_main)
    if ctx.active and config.cache_dir is not None and ctx.is_main:
        dist.barrier()
    ok = [i for i, f in enumerate(features) if f is not None]
    if failures:
        shown = "; ".join(f"{_failure_path(f)} ({_failure_reason(f)})" for f in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        notes.append(f"{len(failures)} of {len(dataset)} file(s) could not be used and were skipped: "
                     f"{shown}{more}")
    if len(ok) < 2:
        raise DatasetError(f"{dataset.root}: only {len(ok)} usable clip(s); need at least 2 to train")
    items = [dataset.items[i] for i in ok]
    y = np.asarray([targets_all[i] for i in ok], dtype=np.int64)
    feats = [features[i] for i in ok]
    groups = [it.group for it in items]
    have_groups = all(g is not None for g in groups)
    test_size = _test_fraction(config.val_size, len(items))
    if test_size > 0:
        tr_idx, va_idx = holdout(y, test_size=test_size,
                                 groups=groups if have_groups else None, seed=config.seed)
        if not have_groups:
            msg = leakage_warning([it.path for it in items], tr_idx, va_idx, labels=y.tolist())
            if msg:
                notes.append(msg)
    else:
        tr_idx, va_idx = np.arange(len(items)), np.arange(0)
    if ctx.is_main:
        for note in notes:  # shown before the (long) training; also returned in TrainResult.warnings
            logger.warning(note)

    out = Path(out_dir)
    split = {
        "train": [items[i].path for i in tr_idx], "val": [items[i].path for i in va_idx],
        "failed": [{"path": _failure_path(f), "reason": _failure_reason(f)} for f in failures],
    }
    if resume and (out / "split.json").is_file():
        before = json.loads((out / "split.json").read_text(encoding="utf-8"))
        if before.get("train") != split["train"] or before.get("val") != split["val"]:
            raise ParameterError(
                f"{out / 'split.json'}: cannot resume, the train/validation split differs from the "
                "interrupted run's (different data, failures or seed)"
            )
    if ctx.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "split.json", split)
    result = fit([feats[i] for i in tr_idx], y[tr_idx], [feats[i] for i in va_idx], y[va_idx],
                 classes=classes, config=config, out_dir=out, progress=progress, resume=resume)
    return TrainResult(
        checkpoint_dir=result.checkpoint_dir, history=result.history, best_epoch=result.best_epoch,
        classes=classes, val_items=tuple(items[i] for i in va_idx), val_proba=result.val_proba,
        failures=list(failures), warnings=notes, pretrained_from=result.pretrained_from,
    )


def _test_fraction(val_size: float, n: int) -> float:
    """``val_size`` as a fraction of ``n`` clips (it is a count when >= 1)."""
    if val_size < 1:
        return float(val_size)
    if val_size >= n:
        raise ParameterError(f"val_size={val_size!r} clips leaves none of the {n} usable clips for training")
    return float(val_size) / n


def _failure_path(failure: Any) -> str:
    """The path of a ``get_features`` failure ``(path, reason)``."""
    return str(failure[0]) if isinstance(failure, (tuple, list)) else str(getattr(failure, "path", failure))


def _failure_reason(failure: Any) -> str:
    if isinstance(failure, (tuple, list)) and len(failure) > 1:
        return str(failure[1])
    return str(getattr(failure, "reason", getattr(failure, "error", "")))
