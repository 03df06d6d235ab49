"""``train_model``: a labelled dataset in, a trained run folder of one registered model out.

``--model auto`` sits above this module (:mod:`soundclass.training.auto` chooses
a model, then trains it with :func:`prepare_data` and :func:`train_prepared`);
:func:`soundclass.training.train` is the entry point that picks one or the other.

The pieces, in order::

    resolve_config     DEFAULTS < model_spec(name).train < user values, validated
    feature_config     the model's FeatureConfig with the user's overrides
    get_features       through the feature cache (with a cache dir the features stay there and
                       are read batch by batch); failed files are reported and skipped
    tie_duplicates     exact and near duplicates tied into groups (soundclass.training.grouping)
    holdout            grouped when groups exist; a leakage warning otherwise
    fit                the loop (soundclass.training.fitting), or with ``config.folds >= 2``
    train_folds        K members on grouped folds and their ensemble (soundclass.training.kfold)
    calibrate          temperature and "unknown" threshold on the validation split
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.checkpoint.state import has_training_state
from soundclass.data.dataset import Dataset, Item, assign_groups, skipped_note
from soundclass.data.splits import holdout
from soundclass.errors import DatasetError, ParameterError, SplitError
from soundclass.extraction.cache import get_features
from soundclass.extraction.stored import feature_shapes, take
from soundclass.models.classical import is_classical
from soundclass.training import distributed as dist
from soundclass.training.calibrate import calibrate_run
from soundclass.training.classical_run import fit_classical_run
from soundclass.training.config import AUTO, TrainConfig, feature_config, resolve_config
from soundclass.training.fitting import fit
from soundclass.training.grouping import DuplicateTies, split_notes, tie_duplicates
from soundclass.training.kfold import train_run_folds
from soundclass.training.pretrained import check_pretrained_file
from soundclass.training.result import TrainResult
from soundclass.util.atomic import write_json_atomic
from soundclass.util.failures import Failure

__all__ = ["PreparedData", "prepare_data", "train_model", "train_prepared"]

logger = logging.getLogger(__name__)


def train_model(
    dataset: Dataset,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike,
    progress: bool = True,
    executor: Any = None,
    resume: bool = False,
) -> TrainResult:
    """Train one registered model on a labelled dataset, end to end.

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
    ParameterError
        ``config.model='auto'`` (:func:`soundclass.training.train` chooses the model).
    CheckpointError
        ``config.pretrained`` is missing (checked before feature extraction),
        unreadable or does not fit the model.
    """
    if config.model == AUTO:
        raise ParameterError(f"model={AUTO!r} is chosen above the trainer: call soundclass.training.train "
                             "(soundclass.training.auto), or give one registered model")
    config = resolve_config(config)
    if not (resume and has_training_state(Path(out_dir) / "last")):
        check_pretrained_file(config)
    data = prepare_data(dataset, config, progress=progress, executor=executor)
    return train_prepared(data, config, out_dir=out_dir, progress=progress, resume=resume)


@dataclass(frozen=True)
class PreparedData:
    """The usable clips of a dataset, their features and the train/validation split.

    ``items``, ``targets``, ``features`` and ``groups`` have one entry per
    usable clip (``features`` is a
    :class:`~soundclass.extraction.stored.StoredFeatures`, read on use, when
    ``config.cache_dir`` is set); ``groups`` are the split groups after exact and near
    duplicates were tied (``ties``); ``train_idx`` / ``val_idx`` index them;
    ``notes`` are the warnings to show (files of the folder that are not audio, undecodable
    files, ties, group leakage).
    """

    classes: tuple[str, ...]
    items: list[Item]
    targets: np.ndarray
    features: Sequence[np.ndarray]
    groups: np.ndarray | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    failures: list[Failure]
    notes: list[str]
    ties: DuplicateTies


def prepare_data(dataset: Dataset, config: TrainConfig, *, progress: bool = True,
                 executor: Any = None, val_paths: Collection[str] | None = None,
                 desc: str | None = None) -> PreparedData:
    """Features of ``feature_config(config)`` (through the cache) and the grouped holdout split.

    ``config`` is resolved; the split depends on ``config.seed``,
    ``config.val_size``, the groups and the usable clips only.  ``val_paths``
    (e.g. one fold of a cross-validation benchmark) fixes the validation clips
    instead: the usable clips among them are the validation part, the others
    the training part.  ``desc`` labels the features' progress bar.
    """

    feature = feature_config(config)
    ctx = dist.setup()
    skipped = skipped_note(dataset.skipped, root=dataset.root)
    notes: list[str] = [skipped] if skipped else []
    if config.group_pattern:
        dataset = assign_groups(dataset, config.group_pattern)
    classes = tuple(dataset.classes)
    targets_all = dataset.targets
    if ctx.active and config.cache_dir is not None and not ctx.is_main:
        dist.barrier()  # rank 0 fills the cache first; the others then read it
    # with a cache dir: checked, not kept; every consumer reads the clips batch by batch
    features, failures = get_features(dataset.paths, feature, cache_dir=config.cache_dir,
                                      n_jobs=config.n_jobs, executor=executor,
                                      progress=progress and ctx.is_main, lazy=True,
                                      desc=desc or f"features ({config.model})")
    if ctx.active and config.cache_dir is not None and ctx.is_main:
        dist.barrier()
    ok = [i for i, s in enumerate(feature_shapes(features)) if s is not None]
    if failures:
        shown = "; ".join(f"{f.path} ({f.reason})" for f in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        notes.append(f"{len(failures)} of {len(dataset)} file(s) could not be used and were skipped: "
                     f"{shown}{more}")
    if len(ok) < 2:
        raise DatasetError(f"{dataset.root}: only {len(ok)} usable clip(s); need at least 2 to train")
    items = [dataset.items[i] for i in ok]
    y = np.asarray([targets_all[i] for i in ok], dtype=np.int64)
    feats = take(features, ok)
    user_groups = [it.group for it in items]
    user_groups = user_groups if any(g is not None for g in user_groups) else None
    ties = tie_duplicates([it.path for it in items], groups=user_groups, near_duplicates=config.near_duplicates,
                          cache_dir=config.cache_dir, n_jobs=config.n_jobs, executor=executor)
    test_size = _test_fraction(config.val_size, len(items))
    if val_paths is None and test_size > 0:
        _check_splittable(ties, user_groups, dataset.root)
    if val_paths is not None:
        chosen = {str(p) for p in val_paths}
        is_val = np.array([it.path in chosen for it in items])
        tr_idx, va_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    elif test_size > 0:
        tr_idx, va_idx = holdout(y, test_size=test_size, groups=ties.groups, seed=config.seed)
    else:
        tr_idx, va_idx = np.arange(len(items)), np.arange(0)
    if len(va_idx):
        notes += split_notes(ties, [it.path for it in items], tr_idx, va_idx, y, guessed=user_groups is None)
    return PreparedData(classes, items, y, feats, ties.groups, np.asarray(tr_idx), np.asarray(va_idx),
                        list(failures), notes, ties)


def _check_splittable(ties: DuplicateTies, user_groups: list | None, root: str) -> None:
    """A :class:`SplitError` saying why, when the tied groups leave fewer than 2 to split."""
    if ties.groups is None or len(set(ties.groups)) >= 2:  # None: every clip is its own group
        return
    had = len({g for g in user_groups if g is not None}) if user_groups is not None else None
    why = (f"the {had} groups of --group-pattern" if had else "the clips")
    raise SplitError(
        f"{root}: {why} became one group once {ties.n_tied_clips} clips in {ties.n_sets} duplicate sets "
        f"were tied together (copies must stay on one side of every split), so no grouped split is "
        f"possible; use a --group-pattern with more, smaller groups, a higher --near-duplicates "
        f"threshold (now {ties.threshold:g}) or --no-near-duplicates")


def train_prepared(data: PreparedData, config: TrainConfig, *, out_dir: str | os.PathLike,
                   progress: bool = True, resume: bool = False) -> TrainResult:
    """The training stage of :func:`train` on prepared data: ``split.json``, then the fit.

    Classical models (:func:`soundclass.models.classical.is_classical`) are
    fitted once (:func:`soundclass.training.classical_run.fit_classical_run`);
    neural ones by the loop, or by ``train_run_folds`` with ``config.folds >= 2``.
    """
    config = resolve_config(config)
    ctx = dist.setup()
    items, y, feats, tr_idx, va_idx = data.items, data.targets, data.features, data.train_idx, data.val_idx
    classes, failures, notes = data.classes, data.failures, list(data.notes)
    if ctx.is_main:
        for note in notes:  # shown before the (long) training; also returned in TrainResult.warnings
            logger.warning(note)

    out = Path(out_dir)
    split = {
        "train": [items[i].path for i in tr_idx], "val": [items[i].path for i in va_idx],
        "failed": [{"path": f.path, "reason": f.reason} for f in failures],
        "duplicates": data.ties.summary([it.path for it in items]),
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
        write_json_atomic(out / "split.json", split, allow_nan=True)
    if is_classical(config.model):
        if config.folds >= 2:
            raise ParameterError(f"folds={config.folds} is for neural models; {config.model!r} is fitted "
                                 "once (use folds=0)")

        result = fit_classical_run(take(feats, tr_idx), y[tr_idx], take(feats, va_idx),
                                   y[va_idx], classes=classes, config=config, out_dir=out)
    elif config.folds >= 2:  # K members and their ensemble (soundclass.training.kfold)

        folds = train_run_folds(feats, y, items, tr_idx, va_idx, classes=classes, config=config, out_dir=out,
                                groups=data.groups, failures=failures, warnings=notes,
                                progress=progress, resume=resume)
        if ctx.rank != 0 or not folds.val_items:
            return folds
        # the ensemble's calibration: on the held-out part, or on the out-of-fold clips (val_size 0)
        y_eval = np.asarray([classes.index(it.label) for it in folds.val_items], dtype=np.int64)
        return dataclasses.replace(folds, calibration=calibrate_run(folds, y_eval, config),
                                   duplicates=split["duplicates"])
    else:
        result = fit(take(feats, tr_idx), y[tr_idx], take(feats, va_idx), y[va_idx],
                     classes=classes, config=config, out_dir=out, progress=progress, resume=resume)
    calibration = calibrate_run(result, y[va_idx], config) if ctx.rank == 0 else None
    return TrainResult(
        checkpoint_dir=result.checkpoint_dir, history=result.history, best_epoch=result.best_epoch,
        classes=classes, val_items=tuple(items[i] for i in va_idx), val_proba=result.val_proba,
        failures=list(failures), warnings=notes, pretrained_from=result.pretrained_from,
        calibration=calibration, duplicates=split["duplicates"],
    )


def _test_fraction(val_size: float, n: int) -> float:
    """``val_size`` as a fraction of ``n`` clips (it is a count when >= 1)."""
    if val_size < 1:
        return float(val_size)
    if val_size >= n:
        raise ParameterError(f"val_size={val_size!r} clips leaves none of the {n} usable clips for training")
    return float(val_size) / n
