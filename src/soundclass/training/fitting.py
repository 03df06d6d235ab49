"""``fit``: train a registered model on features, one epoch after another, with resumable state.

Per run, once: standardization statistics (train part only), clip length,
model, pretrained backbone (``config.pretrained``), loader, optimizer, LR
schedule, augmentation chain; then per epoch::

    train_one_epoch -> validate -> EarlyStopping -> checkpoint/ (best),
    last/ (model + resumable state), history.json

Under ``torchrun`` every rank trains, rank 0 alone validates and writes
(:mod:`soundclass.training.distributed`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundclass.checkpoint.format import META_NAME, load_checkpoint, save_checkpoint
from soundclass.checkpoint.state import (
    capture_rng_state,
    has_training_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)
from soundclass.errors import ParameterError
from soundclass.extraction.stored import feature_shapes
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import predict_logits, window_padding
from soundclass.models import create_model, model_spec
from soundclass.training import distributed as dist
from soundclass.training import loop
from soundclass.training.config import (
    RUNTIME_FIELDS,
    TrainConfig,
    config_json,
    feature_config,
    resolve_config,
)
from soundclass.training.data import (
    CLIP_PERCENTILE,
    bucket_from_data,
    clip_seconds_from_data,
    derive_seed,
    float32_features,
    loss_weights,
    make_loaders,
    norm_stats,
)
from soundclass.training.optim import make_optimizer, make_scheduler
from soundclass.training.pretrained import load_pretrained_weights
from soundclass.util.atomic import write_json_atomic
from soundclass.util.progress import progress_bar

__all__ = ["FitResult", "fit"]


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` produced.

    ``history`` has one dict per epoch (``epoch``, ``train_loss``, ``val_loss``,
    ``val_accuracy``, ``val_macro_f1``, ``lr``, ``seconds``); ``val_proba`` are
    the best checkpoint's validation probabilities (``None`` without validation).
    ``model`` is the model after the last epoch (unwrapped, eval mode).  Under
    ``torchrun`` only rank 0 validates and records: on other ranks ``history``
    is empty and ``val_proba`` is ``None``.  ``pretrained_from`` is the record
    of :func:`~soundclass.training.pretrained.load_pretrained_weights`
    (``None`` without ``config.pretrained``).
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
    on_epoch: Callable[[Mapping[str, Any]], bool] | None = None,
) -> FitResult:
    """Train a registered model on cached features; the explicit loop.

    Parameters
    ----------
    train_features, val_features : sequence of np.ndarray, or StoredFeatures
        Raw (unstandardized) features of ``feature_config(config)``:
        ``(n_features, t_i)`` per clip for sequence models, ``(n_features,)``
        for vector models.  ``val_features`` may be empty (no validation:
        the last epoch becomes the checkpoint).  Features still in the cache
        (:class:`~soundclass.extraction.stored.StoredFeatures`) are read batch
        by batch, never all held; the result is the same as in memory.
    train_targets, val_targets : sequence of int
        Class indices into ``classes``.
    classes : sequence of str
    config : TrainConfig
        Resolved here (:func:`~soundclass.training.config.resolve_config`).
    out_dir : path
        Receives ``checkpoint/`` (best), ``last/`` (resumable) and ``history.json``.
    progress : bool
        Progress bars (rank 0 only; :func:`soundclass.util.progress.progress_bar`).
    resume : bool
        Continue from ``out_dir/last`` if it holds a training state (the
        weights then come from there, not from ``config.pretrained``).
    on_epoch : callable or None
        Called on rank 0 with each epoch's ``history`` row; ``True`` stops the
        training there like early stopping (``--model auto`` stops a candidate
        that cannot reach the leader).

    Returns
    -------
    FitResult

    Raises
    ------
    CheckpointError
        ``config.pretrained`` is missing, unreadable or does not fit the
        model, or the saved state of ``last/`` is inconsistent (a save cut short).
    """
    data = _FitData.build(train_features, train_targets, val_features, val_targets,
                          classes=classes, config=resolve_config(config))
    run = _Run(data, out_dir=Path(out_dir), progress=progress, resume=resume)
    run.on_epoch = on_epoch
    restore_determinism = _use_deterministic()
    try:
        stopped, epoch = run.train_epochs()
    finally:
        restore_determinism()
        run.bar.close()
    return run.result(stopped=stopped and epoch < data.config.epochs)


@dataclass(frozen=True)
class _FitData:
    """Checked inputs of :func:`fit`, with what follows from them (clip length, standardization)."""

    config: TrainConfig  # clip_seconds decided
    classes: tuple[str, ...]
    input_kind: str
    standardize: bool
    train_features: Sequence[np.ndarray]  # a list, or a StoredFeatures read batch by batch
    train_targets: np.ndarray
    val_features: Sequence[np.ndarray]
    val_targets: np.ndarray
    clip_frames: int | None
    norm_mean: np.ndarray | None
    norm_std: np.ndarray | None

    @classmethod
    def build(cls, train_features, train_targets, val_features, val_targets, *,
              classes: Sequence[str], config: TrainConfig) -> _FitData:
        classes = tuple(str(c) for c in classes)
        n_classes = len(classes)
        if n_classes < 2:
            raise ParameterError(f"need at least 2 classes, got {n_classes}: {classes}")
        spec, feature = model_spec(config.model), feature_config(config)
        train_features, val_features = float32_features(train_features), float32_features(val_features)
        train_targets = np.asarray(train_targets, dtype=np.int64)
        val_targets = np.asarray(val_targets, dtype=np.int64)
        if len(train_features) != train_targets.size or len(val_features) != val_targets.size:
            raise ParameterError("features and targets have different lengths")
        if train_targets.size == 0:
            raise ParameterError("no training clips")
        for name, t in (("train_targets", train_targets), ("val_targets", val_targets)):
            if t.size and (t.min() < 0 or t.max() >= n_classes):
                raise ParameterError(f"{name} must be class indices in [0, {n_classes})")
        train_shapes = feature_shapes(train_features)  # read nothing from a StoredFeatures
        for what, shapes in (("train_features", train_shapes), ("val_features", feature_shapes(val_features))):
            _check_shapes(shapes, input_kind=spec.input, n_features=feature.n_features, what=what)
        clip_frames = None
        if spec.input == "sequence":
            if config.clip_seconds is None:
                pct = CLIP_PERCENTILE if config.clip_percentile is None else config.clip_percentile
                config = config.replace(clip_seconds=clip_seconds_from_data(
                    [s[1] for s in train_shapes], frame_rate=feature.frame_rate, percentile=pct))
            clip_frames = max(1, int(round(config.clip_seconds * feature.frame_rate)))
            if config.bucket is None:
                config = config.replace(bucket=bucket_from_data(
                    [s[1] for s in train_shapes], clip_frames=clip_frames))
        norm_mean, norm_std = norm_stats(train_features) if spec.standardize else (None, None)
        return cls(config, classes, spec.input, spec.standardize, train_features, train_targets,
                   val_features, val_targets, clip_frames, norm_mean, norm_std)


class _Run:
    """The objects of one :func:`fit` run, built once, and what one epoch does with them."""

    def __init__(self, data: _FitData, *, out_dir: Path, progress: bool, resume: bool):
        config = self.config = data.config
        self.data, self.out = data, out_dir
        n_classes = len(data.classes)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        ctx = dist.setup()
        self.device = dist.device_for(ctx, _device(config))
        self.is_main, self.progress = ctx.rank == 0, progress and ctx.rank == 0
        self.ckpt_dir, self.last_dir = out_dir / "checkpoint", out_dir / "last"
        if self.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)

        torch.manual_seed(derive_seed(config.seed, "init"))
        self.feature = feature_config(config)
        model = create_model(config.model, n_classes=n_classes, n_features=self.feature.n_features,
                             **config.model_kwargs)
        resuming = resume and has_training_state(self.last_dir)
        self.pretrained_from = None if resuming else load_pretrained_weights(model, config)
        self.model = model.to(self.device)
        # standardized per clip by the loader (a StoredFeatures is read per batch)
        self.loader = make_loaders(data.train_features, data.train_targets, config=config, n_classes=n_classes,
                                   clip_frames=data.clip_frames, norm_mean=data.norm_mean,
                                   norm_std=data.norm_std, pin_memory=torch.device(self.device).type == "cuda")
        self.optimizer = make_optimizer(model, config)
        self.scheduler = make_scheduler(self.optimizer, config, total_steps=config.epochs * len(self.loader))
        self.augment = loop.BatchAugment.from_config(config, n_classes=n_classes)
        self.class_weight = loss_weights(data.train_targets, n_classes=n_classes, balance=config.balance)
        self.has_val = len(data.val_features) > 0
        self.stopper = loop.EarlyStopping(
            config.patience if self.has_val else 0,
            mode="max" if (config.monitor == "macro_f1" or not self.has_val) else "min")
        self.history: list[dict[str, Any]] = []
        self.on_epoch: Callable[[Mapping[str, Any]], bool] | None = None
        self.start_epoch = 0
        if resuming:
            self.start_epoch, saved_extra = self._resume()
            self.pretrained_from = saved_extra.get("pretrained_from")
        self.run_config = config_json(config)
        if config.pretrained is not None:
            self.run_config["pretrained_from"] = self.pretrained_from
        self.train_model = dist.wrap_model(model, device=self.device)
        if self.is_main:
            write_json_atomic(out_dir / "config.json", self.run_config, allow_nan=True)
        self.bar = progress_bar(config.epochs, initial=self.start_epoch, desc=f"train {config.model}",
                                unit="epoch", enabled=self.progress, interval=0.0)  # a log line per epoch

    def train_epochs(self) -> tuple[bool, int]:
        """Train until ``config.epochs`` or early stopping; whether it stopped and the next epoch."""
        stopped = self.stopper.should_stop
        epoch = self.start_epoch
        while epoch < self.config.epochs and not stopped:
            tr = loop.train_one_epoch(
                self.train_model, self.loader, self.optimizer, self.scheduler, epoch=epoch,
                config=self.config, augment=self.augment, class_weight=self.class_weight,
                device=self.device, progress=self.progress)
            dist.sync_buffers(self.model)  # BatchNorm statistics of rank 0 everywhere
            halt = False
            if self.is_main:  # validation and files on rank 0 only
                self._end_epoch(epoch, tr)
                halt = self.on_epoch is not None and bool(self.on_epoch(self.history[-1]))
            stopped = dist.broadcast_flag(self.stopper.should_stop or halt)
            dist.barrier()
            epoch += 1
        return stopped, epoch

    def _validate(self) -> dict[str, Any] | None:
        d = self.data
        if not self.has_val:
            return None
        return loop.validate(self.model, d.val_features, d.val_targets, classes=d.classes,
                             input_kind=d.input_kind, clip_frames=d.clip_frames, norm_mean=d.norm_mean,
                             norm_std=d.norm_std, batch_size=max(64, self.config.batch_size),
                             threads=self.config.threads, pad_to_window=self._pads)

    @property
    def _pads(self) -> bool:
        """Short validation clips padded to the window, as training padded them (``bucket=False``)."""
        return window_padding(input_kind=self.data.input_kind, clip_frames=self.data.clip_frames,
                              bucket=self.config.bucket)

    def _end_epoch(self, epoch: int, tr: Mapping[str, Any]) -> None:
        """Validate, step early stopping, write checkpoint/, last/ and history.json."""
        va = self._validate()
        row = _history_row(epoch, tr, va)
        self.history.append(row)
        # without validation the latest epoch is the best
        improved = self.stopper.step(va[self.config.monitor] if va is not None else float(epoch), epoch)
        summary = _summary(va, epoch)
        if improved:
            self._save_model(self.ckpt_dir, summary)
        self._save_model(self.last_dir, summary)
        save_training_state(self.last_dir, epoch=epoch, model=self.model, optimizer=self.optimizer,
                            scheduler=self.scheduler, rng_state=capture_rng_state(),
                            extra={"history": self.history, "early_stopping": self.stopper.state_dict(),
                                   "config": config_json(self.config), "pretrained_from": self.pretrained_from})
        write_json_atomic(self.out / "history.json", self.history, allow_nan=True)
        self.bar.set_postfix(loss=f"{tr['loss']:.3f}", val_loss=f"{row['val_loss']:.3f}",
                             val_f1=f"{row['val_macro_f1']:.3f}")
        self.bar.update(1)

    def _save_model(self, folder: Path, metrics: Mapping[str, Any]) -> None:
        d, c = self.data, self.config
        save_checkpoint(folder, self.model, model_name=c.model, model_kwargs=c.model_kwargs,
                        feature=self.feature, classes=d.classes, train_config=self.run_config,
                        norm_mean=d.norm_mean, norm_std=d.norm_std, clip_frames=d.clip_frames,
                        metrics=metrics)

    def _resume(self) -> tuple[int, dict[str, Any]]:
        """Load ``last/``'s training state into this run; the next epoch to run and the state's extras."""
        state = load_training_state(self.last_dir)
        saved = state.extra.get("config", {})
        now = json.loads(json.dumps(config_json(self.config)))
        if _comparable(saved) != _comparable(now):
            diff = sorted(k for k in set(saved) | set(now) if _comparable(saved).get(k) != _comparable(now).get(k))
            raise ParameterError(
                f"{self.last_dir}: cannot resume, the config differs in {', '.join(diff)}; "
                "use a new output folder or the same config"
            )
        if saved.get("epochs") != now.get("epochs"):
            raise ParameterError(
                f"{self.last_dir}: cannot resume with epochs={now.get('epochs')} (saved run has "
                f"epochs={saved.get('epochs')}; the LR schedule depends on it)"
            )
        self.model.load_state_dict(state.model_state)
        self.optimizer.load_state_dict(state.optimizer_state)
        if self.scheduler is not None and state.scheduler_state is not None:
            self.scheduler.load_state_dict(state.scheduler_state)
        self.stopper.load_state_dict(state.extra["early_stopping"])
        self.history.extend(state.extra.get("history", []))
        restore_rng_state(state.rng_state)
        return state.epoch + 1, dict(state.extra)

    def result(self, *, stopped: bool) -> FitResult:
        d = self.data
        val_proba = None
        if self.is_main and self.has_val and (self.ckpt_dir / META_NAME).is_file():
            best = load_checkpoint(self.ckpt_dir, device=self.device)
            val_proba = softmax(predict_logits(
                best.model, d.val_features, input_kind=best.input, clip_frames=best.clip_frames,
                norm_mean=best.norm_mean, norm_std=best.norm_std, batch_size=max(64, self.config.batch_size),
                threads=self.config.threads, pad_to_window=self._pads))
        best_epoch = self.stopper.best_epoch
        return FitResult(
            checkpoint_dir=self.ckpt_dir, last_dir=self.last_dir, history=self.history,
            best_epoch=-1 if best_epoch is None else int(best_epoch), config=self.config,
            clip_frames=d.clip_frames, norm_mean=d.norm_mean, norm_std=d.norm_std, val_proba=val_proba,
            stopped_early=stopped, model=self.model.eval(), pretrained_from=self.pretrained_from,
        )


def _device(config: TrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _check_shapes(shapes: Sequence[tuple[int, ...] | None], *, input_kind: str, n_features: int,
                  what: str) -> None:
    want = 1 if input_kind == "vector" else 2
    for i, s in enumerate(shapes):
        if s is None or len(s) != want or s[0] != n_features:
            shape = f"({n_features},)" if want == 1 else f"({n_features}, t)"
            raise ParameterError(f"{what}[{i}] has shape {s}; the model takes {shape}")


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
    return {k: v for k, v in cfg.items() if k not in RUNTIME_FIELDS}
