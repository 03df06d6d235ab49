"""The training loop's pieces: the augmentation chain, one epoch, validation and early stopping.

:func:`~soundclass.training.fit` strings them together; each is usable (and
tested) on its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from soundclass.checkpoint.format import unwrap_model
from soundclass.dsp import augment
from soundclass.errors import ParameterError, check_non_negative_int
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import predict_logits
from soundclass.training import distributed as dist
from soundclass.training.config import TrainConfig
from soundclass.training.data import derive_seed, set_epoch
from soundclass.util.progress import LINE_INTERVAL, progress_bar

__all__ = ["BatchAugment", "EarlyStopping", "train_one_epoch", "validate"]

# (x, y) -> (x, target, label_smoothing) with x (B, n_features, L) or (B, n_features),
# target (B,) class indices or (B, n_classes) soft labels.
BatchTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, float]]


@dataclass(frozen=True)
class BatchAugment:
    """The run's batch augmentation chain, built once from the config (:meth:`from_config`).

    In order: frequency warp, time stretch, SpecAugment (sequence batches
    only), then mixup with soft, label-smoothed targets.  Each epoch draws
    from its own generators, seeded from ``(seed, epoch)``
    (:meth:`for_epoch`); the warps have a stream of their own, so turning
    them on or off leaves the other draws unchanged.

    Parameters
    ----------
    n_classes : int
        Width of the soft targets of mixup.
    seed : int
    freq_warp, time_stretch, spec_augment, mixup_alpha, label_smoothing
        See :class:`~soundclass.training.TrainConfig`; 0 / ``False`` disables.
    """

    n_classes: int
    seed: int = 0
    freq_warp: float = 0.0
    time_stretch: float = 0.0
    spec_augment: bool = False
    mixup_alpha: float = 0.0
    label_smoothing: float = 0.0

    @classmethod
    def from_config(cls, config: TrainConfig, *, n_classes: int) -> BatchAugment:
        """The chain of a resolved config (``None`` settings count as disabled)."""
        return cls(n_classes=int(n_classes), seed=config.seed, freq_warp=float(config.freq_warp or 0.0),
                   time_stretch=float(config.time_stretch or 0.0), spec_augment=bool(config.spec_augment),
                   mixup_alpha=float(config.mixup_alpha or 0.0),
                   label_smoothing=float(config.label_smoothing or 0.0))

    def for_epoch(self, epoch: int) -> BatchTransform:
        """The transform of every batch of ``epoch``: ``(x, y) -> (x, target, label_smoothing)``.

        ``label_smoothing`` is what the loss must still apply (0 for the mixed
        soft targets, which carry it already).
        """
        aug_gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, "augment"))
        mix_gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, "mixup"))
        warp_gen = torch.Generator().manual_seed(derive_seed(self.seed, epoch, "warp"))

        def apply(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
            if x.ndim == 3:  # (B, n_features, L): sequence windows
                if self.freq_warp > 0:
                    x = augment.freq_warp(x, max_warp=self.freq_warp, generator=warp_gen)
                if self.time_stretch > 0:
                    x = augment.time_stretch(x, max_stretch=self.time_stretch, generator=warp_gen)
                if self.spec_augment:
                    x = augment.spec_augment(x, generator=aug_gen)
            if self.mixup_alpha <= 0:
                return x, y, self.label_smoothing
            x, y_a, y_b, lam = augment.mixup(x, y, alpha=self.mixup_alpha, generator=mix_gen)
            target = augment.mix_targets(y_a, y_b, lam, n_classes=self.n_classes,
                                         label_smoothing=self.label_smoothing)  # (B, n_classes)
            return x, target.to(x.device), 0.0

        return apply


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
    config: TrainConfig,
    augment: BatchAugment,
    class_weight: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> dict[str, float]:
    """One pass over ``loader``: augment, forward, loss, backward, step, LR step per batch.

    Parameters
    ----------
    model, loader, optimizer, scheduler
        As made by :func:`~soundclass.training.data.make_loaders`,
        :func:`~soundclass.training.optim.make_optimizer`,
        :func:`~soundclass.training.optim.make_scheduler` (``scheduler`` may be ``None``).
    epoch : int
        With ``config.seed``, seeds every random draw of this epoch (sampler,
        crops, augmentation, dropout).
    config : TrainConfig
        Resolved; ``seed`` and ``grad_clip`` are used here.
    augment : BatchAugment
        The run's augmentation chain (made once, :meth:`BatchAugment.from_config`).
    class_weight : np.ndarray [shape=(n_classes,)], optional
        Class weights of the loss.
    device : str or torch.device
    progress : bool
        Show a batch progress bar (:func:`soundclass.util.progress.progress_bar`: live on a
        terminal; elsewhere a line a minute, so only inside epochs longer than that).

    Returns
    -------
    dict
        ``loss`` (mean training loss over items), ``lr`` (of the last step),
        ``n`` (items seen), ``seconds``.
    """
    t0 = time.perf_counter()
    model.train()
    set_epoch(loader, epoch, config.seed)
    torch.manual_seed(derive_seed(config.seed, epoch, "torch"))  # dropout etc.
    transform = augment.for_epoch(epoch)
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    total, n, lr = 0.0, 0, optimizer.param_groups[0]["lr"]
    try:
        n_batches = len(loader)
    except TypeError:  # an iterable-style dataset: no length
        n_batches = None
    # not a terminal: the epoch bar writes a line per epoch; this one a line a minute inside long epochs
    bar = progress_bar(n_batches, desc=f"epoch {epoch + 1} ({config.model})", unit="batch",
                       enabled=progress, leave=False, interval=6 * LINE_INTERVAL)
    try:
        for x, y in loader:
            # (B, n_features, L) or (B, n_features); (B,); a no-op on the CPU
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            x, target, smoothing = transform(x, y)
            logits = model(x)  # (B, n_classes)
            loss = _loss(logits, target, weight=weight, label_smoothing=smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"epoch {epoch + 1}: training loss became {loss.item()} (lower lr?)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            total += float(loss.detach()) * x.shape[0]
            n += x.shape[0]
            bar.update(1)
    finally:
        bar.close()
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
    threads: int | None = None,
    pad_to_window: bool = False,
) -> dict[str, Any]:
    """Clip-level validation through :func:`soundclass.inference.predictor.predict_logits`.

    Exactly what ``predict`` computes: a clip shorter than ``clip_frames`` is
    scored whole at its own length (padded to one window with
    ``pad_to_window``, for a model trained on padded windows), longer clips by
    the windowed average.

    Returns
    -------
    dict
        ``loss`` (unweighted mean cross-entropy), ``accuracy``, ``macro_f1``,
        ``balanced_accuracy``, ``metrics`` (the full
        :func:`soundclass.evaluation.metrics.evaluate_predictions` dict) and ``proba``
        ``[shape=(N, n_classes)]``.
    """
    logits = predict_logits(unwrap_model(model), features, input_kind=input_kind, clip_frames=clip_frames,
                            norm_mean=norm_mean, norm_std=norm_std, batch_size=batch_size, threads=threads,
                            pad_to_window=pad_to_window)
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
        self.patience = check_non_negative_int("patience", patience)
        self.mode, self.min_delta = mode, float(min_delta)
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
