"""Training: one config dataclass and an explicit loop in small functions.

One module per concept:

=================  =====================================================================
``config``         :class:`TrainConfig` (every field's type, range, help and flag),
                   :data:`DEFAULTS`, :func:`resolve_config`, :func:`feature_config`
``pretrained``     PANNs fine-tuning: :func:`check_pretrained`, :func:`load_pretrained_weights`
``data``           seeds, class weights, standardization stats, clip length, the loader
``optim``          :func:`make_optimizer`, :func:`make_scheduler`
``loop``           :class:`BatchAugment`, :func:`train_one_epoch`, :func:`validate`,
                   :class:`EarlyStopping`
``fitting``        :func:`fit`: the epochs on features, checkpoints, resume
``trainer``        :func:`train_model`: dataset -> features -> split -> :func:`fit` (one model)
``auto``           ``--model auto``: chooses a model, then trains it through the trainer
``result``         :class:`TrainResult`, what every way of training returns
``distributed``    ``torchrun`` helpers
=================  =====================================================================

:func:`train` (defined here) is the entry point of ``soundclass train`` and of the
library: ``model='auto'`` goes to :mod:`~soundclass.training.auto`, which sits above
the trainer; any other model to :func:`~soundclass.training.trainer.train_model`.
Nothing below this package imports it, so training flows one way.

The resumable :class:`TrainingState` of ``last/`` and the checkpoint format
are :mod:`soundclass.checkpoint` (re-exported here).

Determinism: every random draw of epoch ``e`` comes from seeds derived from
``(config.seed, e)`` (model init, sampler order, crops, SpecAugment, mixup,
dropout), so the same seed gives the same history and weights, and a run
resumed from ``last/`` after epoch ``k`` continues exactly like an
uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

from soundclass.checkpoint.state import TrainingState, load_training_state, save_training_state
from soundclass.data.dataset import Dataset
from soundclass.training.auto import train_auto
from soundclass.training.config import (
    AUTO,
    BALANCES,
    DEFAULTS,
    MONITORS,
    OPTIMIZERS,
    SCHEDULERS,
    Setting,
    TrainConfig,
    feature_config,
    resolve_config,
    settings,
)
from soundclass.training.data import (
    ClipDataset,
    class_weights,
    clip_seconds_from_data,
    derive_seed,
    make_loaders,
    norm_stats,
    sample_weights,
)
from soundclass.training.fitting import FitResult, fit
from soundclass.training.loop import BatchAugment, EarlyStopping, train_one_epoch, validate
from soundclass.training.optim import make_optimizer, make_scheduler
from soundclass.training.pretrained import (
    PRETRAINED_MODELS,
    check_pretrained,
    load_pretrained_weights,
)
from soundclass.training.result import TrainResult
from soundclass.training.trainer import train_model

__all__ = [
    "AUTO",
    "BALANCES",
    "DEFAULTS",
    "MONITORS",
    "OPTIMIZERS",
    "PRETRAINED_MODELS",
    "SCHEDULERS",
    "BatchAugment",
    "ClipDataset",
    "EarlyStopping",
    "FitResult",
    "Setting",
    "TrainConfig",
    "TrainResult",
    "TrainingState",
    "check_pretrained",
    "class_weights",
    "clip_seconds_from_data",
    "derive_seed",
    "feature_config",
    "fit",
    "load_pretrained_weights",
    "load_training_state",
    "make_loaders",
    "make_optimizer",
    "make_scheduler",
    "norm_stats",
    "resolve_config",
    "sample_weights",
    "save_training_state",
    "settings",
    "train",
    "train_auto",
    "train_model",
    "train_one_epoch",
    "validate",
]


def train(dataset: Dataset, config: TrainConfig, *, out_dir: str | os.PathLike, progress: bool = True,
          executor: Any = None, resume: bool = False) -> TrainResult:
    """Train on a labelled dataset: the entry point of ``soundclass train`` and of the library.

    ``config.model == 'auto'`` chooses the model by grouped cross-validation and
    trains it (:func:`soundclass.training.auto.train_auto`, which sits above the
    trainer; ``resume`` does not apply); any other model is trained by
    :func:`soundclass.training.trainer.train_model`.  Parameters and result are
    those of :func:`~soundclass.training.trainer.train_model`.
    """
    if config.model == AUTO:
        return train_auto(dataset, config, out_dir=out_dir, progress=progress, executor=executor)
    return train_model(dataset, config, out_dir=out_dir, progress=progress, executor=executor, resume=resume)
