"""What a training run returns: :class:`TrainResult` (its files are in the run folder).

Written by every way of training (:func:`soundclass.training.trainer.train_model`,
the k-fold ensemble of :mod:`soundclass.training.kfold`, ``--model auto``) and
read by the evaluation; it lives apart from all of them so that none imports
another for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.data.dataset import Item
from soundclass.util.failures import Failure

__all__ = ["TrainResult"]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`soundclass.training.train` produced (files are in the run folder).

    ``pretrained_from`` says where the initial backbone came from
    (:func:`soundclass.training.pretrained.load_pretrained_weights`; ``None``
    without ``config.pretrained``).
    ``val_proba`` are the uncalibrated validation probabilities; ``calibration``
    is what :func:`soundclass.training.calibrate.calibrate_run` stored in the
    checkpoint (``None`` without validation clips); ``duplicates`` the counts
    of :class:`soundclass.training.grouping.DuplicateTies` (as in ``split.json``).
    """

    checkpoint_dir: Path
    history: list[dict[str, Any]]
    best_epoch: int
    classes: tuple[str, ...]
    val_items: tuple[Item, ...]
    val_proba: np.ndarray | None
    failures: list[Failure]
    warnings: list[str]
    pretrained_from: Mapping[str, Any] | None = None
    oof: Mapping[str, Any] | None = None  # with folds: out-of-fold metrics (oof.json), n_folds, file
    calibration: Mapping[str, Any] | None = None
    duplicates: Mapping[str, Any] | None = None
    auto: Mapping[str, Any] | None = None  # --model auto: the leaderboard (auto.json)
