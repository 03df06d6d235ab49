"""``train --folds K``: K models on grouped folds, out-of-fold predictions, one ensemble checkpoint.

:func:`train_folds` takes the training part of a run (the held-out validation
part, if any, is split off before it by the trainer) and

1. decides the training window once, from all training clips, so every member
   and the ensemble share ``clip_frames``;
2. splits the clips into ``K`` stratified folds with
   :func:`soundclass.data.splits.kfold` (grouped when groups are given: a
   group is never on both sides of a fold), written to ``folds.json``;
3. trains member ``k`` with the ordinary loop (:func:`~soundclass.training.fitting.fit`)
   on the other folds, validating (early stopping, best checkpoint) on fold
   ``k``, in ``folds/fold_<k>/``; seed ``config.seed + k``;
4. predicts fold ``k`` with member ``k`` (its best checkpoint): every training
   clip gets exactly one out-of-fold prediction, by the one member that never
   trained on it -> ``oof.csv`` (``path,label,predicted,proba_<class>...``)
   and ``oof.json`` (accuracy, macro-F1, ... of those predictions);
5. saves the members as one :class:`~soundclass.models.ensemble.Ensemble`
   (mean probability, each member with its own standardization) in
   ``checkpoint/``, which ``predict``, ``evaluate``, ``serve`` and ``export``
   load like any checkpoint;
6. scores the held-out validation clips (if any) with the ensemble.

The out-of-fold score is slightly optimistic, as every member chose its best
epoch on the fold it predicts; the held-out validation part (``--val-size``)
has no such bias.

The boundary is ``train_folds(features, targets, ..., config)``: the model is
``config.model``, so a model search (``--model auto``) can call it once per
candidate, or once with the chosen name.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.data.splits import kfold
from soundclass.errors import ParameterError
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.extraction.stored import feature_shapes, take
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import predict_logits, window_padding
from soundclass.models import model_spec
from soundclass.models.ensemble import ENSEMBLE_NAMES, Ensemble, ensemble_kwargs, ensemble_name
from soundclass.training import distributed as dist
from soundclass.training.config import TrainConfig, config_json, feature_config, resolve_config
from soundclass.training.data import clip_seconds_from_data, float32_features
from soundclass.training.fitting import fit
from soundclass.training.result import TrainResult
from soundclass.util.atomic import write_json_atomic
from soundclass.util.csvfile import write_csv

__all__ = ["FoldsResult", "OOF_NAME", "FOLDS_NAME", "train_folds", "train_run_folds", "oof_rows"]

logger = logging.getLogger(__name__)

OOF_NAME = "oof.csv"
OOF_METRICS_NAME = "oof.json"
FOLDS_NAME = "folds.json"


@dataclass(frozen=True)
class FoldsResult:
    """What :func:`train_folds` produced.

    Attributes
    ----------
    checkpoint_dir : Path
        The ensemble checkpoint (``out_dir/checkpoint``).
    fold : np.ndarray [shape=(n,)]
        Fold of every training clip (the member that predicted it out of fold).
    oof_proba : np.ndarray [shape=(n, n_classes)]
        Out-of-fold probabilities, rows in training-clip order.
    oof_metrics : dict
        :func:`~soundclass.evaluation.metrics.evaluate_predictions` of them.
    val_proba : np.ndarray or None [shape=(n_val, n_classes)]
        The ensemble's probabilities of the held-out validation clips.
    member_dirs : list of Path
        ``folds/fold_<k>`` run folders (each with its own checkpoint/, history.json).
    histories : list of list of dict
        Each member's training history.
    best_epochs : list of int
    """

    checkpoint_dir: Path
    fold: np.ndarray
    oof_proba: np.ndarray
    oof_metrics: dict
    val_proba: np.ndarray | None
    member_dirs: list
    histories: list
    best_epochs: list


def train_folds(
    features: Sequence[np.ndarray],
    targets: Sequence[int],
    *,
    paths: Sequence[str],
    classes: Sequence[str],
    config: TrainConfig,
    out_dir: str | os.PathLike,
    groups: Sequence[Any] | None = None,
    val_features: Sequence[np.ndarray] = (),
    val_targets: Sequence[int] = (),
    progress: bool = True,
    resume: bool = False,
) -> FoldsResult:
    """Train ``config.folds`` members on grouped folds and save their ensemble.

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i) or (n_features,)], or StoredFeatures
        Raw features of the training clips (``feature_config(config)``); a
        ``StoredFeatures`` is read batch by batch, never all held.
    targets : sequence of int [shape=(n,)]
        Class indices into ``classes``.
    paths : sequence of str [shape=(n,)]
        The clips' paths (``oof.csv``, ``folds.json``).
    classes : sequence of str
    config : TrainConfig
        ``config.model`` is the member model; ``config.folds >= 2``.
    out_dir : path
        The run folder: ``checkpoint/`` (ensemble), ``folds/fold_<k>/``,
        ``folds.json``, ``oof.csv``, ``oof.json``, ``config.json``.
    groups : sequence [shape=(n,)], optional
        Source of each clip; a group stays within one fold.
    val_features, val_targets : optional
        Held-out clips, scored by the ensemble (not used for training).
    progress : bool
        Progress bars, and one summary line per fold on the terminal.
    resume : bool
        Continue an interrupted run: finished members are reloaded, an
        interrupted one continues from its ``last/``.

    Returns
    -------
    FoldsResult

    Raises
    ------
    ParameterError
        ``config.folds < 2``, more folds than clips/groups/the largest class,
        a model that is itself an ensemble, under ``torchrun``, or a resume
        whose fold assignment differs from the interrupted run's.
    """
    config = resolve_config(config)
    k_folds = int(config.folds or 0)
    if k_folds < 2:
        raise ParameterError(f"folds={config.folds!r} must be at least 2 to train an ensemble")
    if config.model in ENSEMBLE_NAMES.values():
        raise ParameterError(f"model={config.model!r}: --folds trains an ensemble of a single model")
    if dist.setup().active:
        raise ParameterError("--folds is not supported under torchrun; train the folds on one process")
    features = float32_features(features)  # a StoredFeatures stays unread
    y = np.asarray(targets, dtype=np.int64)
    paths = [os.fspath(p) for p in paths]
    if not (len(features) == y.size == len(paths)):
        raise ParameterError(f"{len(features)} features, {y.size} targets and {len(paths)} paths differ")
    classes = tuple(str(c) for c in classes)
    spec, feature = model_spec(config.model), feature_config(config)
    if spec.input == "sequence" and config.clip_seconds is None:  # one window for every member
        config = config.replace(clip_seconds=clip_seconds_from_data(
            [s[1] for s in feature_shapes(features)], frame_rate=feature.frame_rate))

    splits = kfold(y, n_splits=k_folds, groups=groups, seed=config.seed)
    fold = np.full(y.size, -1, dtype=np.int64)
    for k, (_, va) in enumerate(splits):
        fold[va] = k
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_folds(out, paths, fold, groups, resume=resume)
    write_json_atomic(out / "config.json", config_json(config), allow_nan=True)

    oof = np.zeros((y.size, len(classes)), dtype=np.float64)
    members, means, stds, dirs, histories, best = [], [], [], [], [], []
    clip_frames = None
    padded = []  # per member: trained on batches padded to the window (bucket=False)
    for k, (tr, va) in enumerate(splits):
        member_dir = out / "folds" / f"fold_{k}"
        result = fit(take(features, tr), y[tr], take(features, va), y[va],
                     classes=classes, config=config.replace(seed=config.seed + k),
                     out_dir=member_dir, progress=progress, resume=resume)
        oof[va] = result.val_proba
        member = _load_member(result.checkpoint_dir)
        members.append(member.model)
        means.append(member.norm_mean)
        stds.append(member.norm_std)
        clip_frames = member.clip_frames
        padded.append(result.config.bucket is False)
        dirs.append(member_dir)
        histories.append(result.history)
        best.append(result.best_epoch)
        if progress:
            _say(f"fold {k + 1}/{k_folds}: {len(tr)} train, {len(va)} out-of-fold clips, "
                 f"best epoch {result.best_epoch + 1}, out-of-fold accuracy "
                 f"{float(np.mean(np.argmax(oof[va], 1) == y[va])):.3f}")

    oof_metrics = _oof_metrics(y, oof, classes=classes, n_folds=k_folds)
    write_csv(out / OOF_NAME, ["path", "label", "predicted", *(f"proba_{c}" for c in classes)],
              oof_rows(paths, y, oof, classes=classes))
    write_json_atomic(out / OOF_METRICS_NAME, oof_metrics, allow_nan=True)
    if progress:
        _say(f"out-of-fold ({y.size} clips, {k_folds} folds): accuracy {oof_metrics['accuracy']:.3f}, "
             f"macro-F1 {oof_metrics['macro_f1']:.3f}")

    if config.bucket is None and padded:  # the ensemble is scored as most of its members were trained
        config = config.replace(bucket=not (2 * sum(padded) > len(padded)))
    ensemble, ckpt_dir = _save_ensemble(out / "checkpoint", members, means, stds, config=config,
                                        classes=classes, clip_frames=clip_frames, oof_metrics=oof_metrics)
    val_proba = None
    if len(val_features):
        # as predict scores the saved ensemble (its train_config holds this bucket)
        pads = window_padding(input_kind=spec.input, clip_frames=clip_frames, bucket=config.bucket)
        val_proba = softmax(predict_logits(ensemble, float32_features(val_features),
                                           input_kind=spec.input, clip_frames=clip_frames,
                                           batch_size=max(64, config.batch_size), pad_to_window=pads))
    return FoldsResult(checkpoint_dir=ckpt_dir, fold=fold, oof_proba=oof.astype(np.float32),
                       oof_metrics=oof_metrics, val_proba=val_proba, member_dirs=dirs,
                       histories=histories, best_epochs=best)


def train_run_folds(features, targets, items, train_idx, val_idx, *, classes, config, out_dir,
                    groups=None, failures=(), warnings=(), progress=True, resume=False):
    """:func:`train_folds` on a run's training part, as a :class:`~soundclass.training.TrainResult`.

    ``items``/``features``/``targets``/``groups`` cover every usable clip;
    ``train_idx``/``val_idx`` are the trainer's split.  Without a validation
    part (``val_size=0``) the out-of-fold predictions are the result's
    validation (``val_items`` = the training clips, ``val_proba`` = OOF), so
    the run's evaluation and report show them.  ``oof`` carries the OOF
    metrics, ``n_folds``, the ``oof.csv`` path, whether they are the
    evaluation (``is_validation``) and each member's best epoch.
    """
    out = Path(out_dir)
    y = np.asarray(targets, dtype=np.int64)
    r = train_folds(take(features, train_idx), y[train_idx], paths=[items[i].path for i in train_idx],
                    classes=classes, config=config, out_dir=out, progress=progress, resume=resume,
                    groups=None if groups is None else [groups[i] for i in train_idx],
                    val_features=take(features, val_idx), val_targets=y[val_idx])
    oof_is_val = len(val_idx) == 0
    return TrainResult(
        checkpoint_dir=r.checkpoint_dir, history=[], best_epoch=-1, classes=tuple(classes),
        val_items=tuple(items[i] for i in (train_idx if oof_is_val else val_idx)),
        val_proba=r.oof_proba if oof_is_val else r.val_proba, failures=list(failures),
        warnings=list(warnings),
        oof={**r.oof_metrics, "file": str(out / OOF_NAME), "is_validation": oof_is_val,
             "best_epochs": r.best_epochs},
    )


def oof_rows(paths: Sequence[str], y: np.ndarray, proba: np.ndarray, *,
             classes: Sequence[str]) -> list[list[str]]:
    """The ``oof.csv`` rows: ``path, label, predicted, proba_<class>...``."""
    pred = np.argmax(proba, axis=1)
    return [[p, classes[int(t)], classes[int(q)], *(f"{v:.6f}" for v in proba[i])]
            for i, (p, t, q) in enumerate(zip(paths, y, pred, strict=True))]


def _say(text: str) -> None:
    tqdm.write(text)


def _oof_metrics(y: np.ndarray, proba: np.ndarray, *, classes: Sequence[str], n_folds: int) -> dict:
    metrics = evaluate_predictions(y, np.argmax(proba, axis=1), classes=list(classes), proba=proba)
    metrics["n_folds"] = int(n_folds)
    return metrics


def _write_folds(out: Path, paths: list[str], fold: np.ndarray, groups, *, resume: bool) -> None:
    record = {
        "n_folds": int(fold.max()) + 1,
        "grouped": groups is not None,
        "clips": [{"path": p, "fold": int(k), **({"group": str(groups[i])} if groups is not None else {})}
                  for i, (p, k) in enumerate(zip(paths, fold, strict=True))],
    }
    path = out / FOLDS_NAME
    if resume and path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before.get("clips") != record["clips"]:
            raise ParameterError(f"{path}: cannot resume, the fold assignment differs from the "
                                 "interrupted run's (different data, failures, groups or seed)")
    write_json_atomic(path, record, allow_nan=True)


def _load_member(checkpoint_dir: Path):
    return load_checkpoint(checkpoint_dir)


def _save_ensemble(folder: Path, members, means, stds, *, config: TrainConfig, classes, clip_frames,
                   oof_metrics: dict):
    standardize = means[0] is not None
    norm = {}
    if standardize:
        norm = {"norm_mean": torch.as_tensor(np.stack(means)), "norm_std": torch.as_tensor(np.stack(stds))}
    ensemble = Ensemble(members, **norm).eval()
    name = ensemble_name(config.model)
    kwargs = ensemble_kwargs(config.model, n_members=len(members), member_kwargs=config.model_kwargs,
                             standardize=standardize)
    scalars = {k: v for k, v in oof_metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    save_checkpoint(folder, ensemble, model_name=name, model_kwargs=kwargs, feature=feature_config(config),
                    classes=classes, train_config=config_json(config), clip_frames=clip_frames,
                    metrics={"split": "out-of-fold", **scalars})
    load_checkpoint(folder)  # fail here, not at predict time, if it does not rebuild
    return ensemble, folder
