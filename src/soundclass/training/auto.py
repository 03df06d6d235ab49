"""``--model auto``: choose the model by grouped cross-validation on the training part, then train it.

:func:`train_auto` is what :func:`soundclass.training.trainer.train` runs for
``config.model == 'auto'``:

1. the candidates (``config.auto_candidates`` or :data:`DEFAULT_CANDIDATES`)
   are ordered by their estimated cost (:func:`estimate_extract_seconds` +
   :func:`estimate_fold_seconds`, rough priors for 2 CPU cores that scale with
   the clips' durations, read from the headers of a sample of
   :data:`DURATION_SAMPLE` clips), cheapest first;
2. each one's features are computed (through the cache) and the data split
   exactly as a single-model run splits it (same seed, groups, ``val_size``);
   :func:`cross_validate` then scores it by grouped stratified
   ``config.auto_folds``-fold cross-validation on the **training part only**
   (:func:`soundclass.data.splits.kfold` with the clips' groups): the
   validation part is never looked at to choose;
3. within ``config.time_budget`` seconds: a candidate whose estimated first
   fold does not fit in what is left is skipped; after its first fold a
   candidate gets only the folds that its measured fold time lets fit
   (at least one); the cheapest candidate always gets one fold so there is a
   choice.  Every such decision is written in the candidate's ``note``;
4. the best mean macro-F1 wins (ties: the cheaper one); it is trained on the
   whole training part by the normal path
   (:func:`~soundclass.training.trainer.train_prepared`) and evaluated on the
   validation part like any single-model run; the leaderboard goes to
   ``auto.json``, ``TrainResult.auto`` and from there into ``metrics.json``
   and ``report.html``.

Neural candidates are fitted by :func:`soundclass.training.fitting.fit` on
each fold, with the fold's held-out part as its validation (early stopping
and best epoch), so their fold scores are a little optimistic; the classical
ones have no such selection.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import ParameterError, SoundclassError
from soundclass.extraction.stored import take
from soundclass.util.atomic import write_json_atomic

__all__ = [
    "DEFAULT_CANDIDATES",
    "candidate_list",
    "cross_validate",
    "estimate_extract_seconds",
    "estimate_fold_seconds",
    "format_leaderboard",
    "sample_durations",
    "train_auto",
]

logger = logging.getLogger(__name__)

#: Candidates of ``--model auto`` when ``auto_candidates`` is not given.
DEFAULT_CANDIDATES = ("aisfx-probe", "logmel-logreg", "mfcc-svm", "cnn", "aisfx")

# Cost priors of the budget before a first fold is measured, on 2 CPU cores: ``(seconds per
# clip, seconds per second of audio the model sees)``, per fit for the classical models and per
# epoch for the neural ones (a sequence model sees each clip up to the training crop).  Measured
# here: cnn 15 ms per clip-epoch on 700 mixed clips seeing 2.6 s each (benchmarks/train_overhead.py),
# the classical fits a few ms per clip; unknown models have no prior (they are run).
_FIT_COST = {"aisfx-probe": (0.002, 0.0), "logmel-logreg": (0.002, 0.0), "mfcc-svm": (0.004, 0.0)}
_EPOCH_COST = {"cnn": (0.001, 0.0055), "cnn-wide": (0.002, 0.011), "seed-cnn": (0.003, 0.0),
               "seed-lstm": (0.001, 0.0015), "cnn6": (0.004, 0.02), "cnn10": (0.008, 0.04),
               "cnn14": (0.02, 0.1), "aisfx": (0.1, 0.0)}  # aisfx trains on whole-block crops

# Feature priors by FeatureConfig.kind: (seconds per clip, seconds per second of audio) with 2
# worker processes; the aiSFX embedding costs per 100-frame block (~2.3 s, hop ~1.2 s, one at
# least): about 0.2 s a block measured on DonateACry and FSDD (loaded machine).
_EXTRACT_COST = {"aisfx-logmel": (0.002, 0.001), "mfcc": (0.002, 0.0005), "logmel": (0.002, 0.0005)}
_AISFX_BLOCK_SECONDS = 0.2

def candidate_list(config: Any) -> list[str]:
    """The candidates of ``config.auto_candidates`` (or the default), checked against the registry."""
    from soundclass.models import list_models
    from soundclass.models.ensemble import ENSEMBLE_NAMES

    names = (DEFAULT_CANDIDATES if config.auto_candidates is None
             else [n.strip() for n in config.auto_candidates.split(",") if n.strip()])
    known = [m for m in list_models() if m not in ENSEMBLE_NAMES.values()]
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise ParameterError(f"auto_candidates={config.auto_candidates!r}: {bad or 'none given'} "
                             f"must be registered models, from {known}")
    return list(dict.fromkeys(names))


#: Clips whose headers are read to know the typical duration (a sample of a large dataset).
DURATION_SAMPLE = 256
_ASSUMED_SECONDS = 2.5  # when no header can be read


def sample_durations(paths: Sequence[str], *, seed: int = 0, n: int = DURATION_SAMPLE) -> np.ndarray:
    """Durations [shape=(<= n,)] in seconds of a seeded sample of ``paths``, from their headers.

    Unreadable files are left out (they fail, and are reported, when features are computed).
    """
    from soundclass.audio import info

    rng = np.random.default_rng(seed)
    pick = rng.permutation(len(paths))[:n] if len(paths) > n else range(len(paths))
    out = []
    for i in pick:
        try:
            out.append(info(paths[i]).duration)
        except SoundclassError:
            continue
    return np.asarray(out, dtype=np.float64)


def _seen_seconds(durations: np.ndarray | None) -> float:
    """Mean seconds a sequence model sees of a clip: the clip, up to the training crop."""
    from soundclass.training.data import clip_seconds_from_data

    d = durations if durations is not None and durations.size else np.array([_ASSUMED_SECONDS])
    crop = clip_seconds_from_data(d * 100.0, frame_rate=100.0)
    return float(np.mean(np.minimum(d, crop)))


def estimate_fold_seconds(name: str, n_train: int, *, epochs: int | None,
                          durations: np.ndarray | None = None) -> float | None:
    """Prior training seconds of one fold of ``name`` on ``n_train`` clips (``None``: unknown).

    ``durations`` (seconds, e.g. :func:`sample_durations`) are the clips' typical lengths;
    without them clips of 2.5 s are assumed.
    """
    if name in _FIT_COST:
        per_clip, per_second = _FIT_COST[name]
        return n_train * (per_clip + per_second * _seen_seconds(durations))
    if name in _EPOCH_COST and epochs is not None:
        per_clip, per_second = _EPOCH_COST[name]
        return n_train * epochs * (per_clip + per_second * _seen_seconds(durations))
    return None


def estimate_extract_seconds(config: Any, n_clips: int, *, cache: bool,
                             durations: np.ndarray | None = None) -> float:
    """Prior feature seconds of ``n_clips`` clips for ``config``'s feature (a cache may make it 0)."""
    from soundclass.training.config import feature_config

    d = durations if durations is not None and durations.size else np.array([_ASSUMED_SECONDS])
    kind = feature_config(config).kind
    if kind == "aisfx":
        from soundclass.dsp.aisfx import AISFX_HOP_LENGTH, AISFX_SR, BLOCK_FRAMES, BLOCK_HOP

        frames = 1 + np.floor(d * AISFX_SR / AISFX_HOP_LENGTH)  # centred frames of the front end
        blocks = 1 + np.maximum(frames - BLOCK_FRAMES, 0) // BLOCK_HOP  # as dsp.aisfx.frames_to_blocks
        per_clip = _AISFX_BLOCK_SECONDS * float(np.mean(blocks))
    else:
        a, b = _EXTRACT_COST.get(kind, (0.002, 0.0005))
        per_clip = a + b * float(np.mean(d))
    return per_clip * n_clips * (0.5 if cache else 1.0)  # a cache may hold some already


def _fold_scores(name: str, config: Any, feats, y, tr, va, classes) -> dict[str, float]:
    """Fit ``name`` on ``tr`` and score it on ``va`` (indices into ``feats``)."""
    from soundclass.evaluation.metrics import evaluate_predictions
    from soundclass.inference.predictor import predict_logits
    from soundclass.models.classical import is_classical

    y_va = y[va]
    if is_classical(name):
        from soundclass.training.classical import fit_classical

        module = fit_classical(name, take(feats, tr), y[tr], seed=config.seed, n_classes=len(classes))
        proba = predict_logits(module, take(feats, va), input_kind="sequence", clip_frames=None)
    else:
        from soundclass.training.fitting import fit

        with tempfile.TemporaryDirectory(prefix="soundclass-auto-") as tmp:
            res = fit(take(feats, tr), y[tr], take(feats, va), y_va, classes=classes,
                      config=config, out_dir=tmp, progress=False)
            proba = res.val_proba
    m = evaluate_predictions(y_va, np.argmax(proba, axis=1), classes=classes)
    return {"macro_f1": float(m["macro_f1"]), "accuracy": float(m["accuracy"])}


def _folds(y: np.ndarray, groups: Sequence[Any] | None, *, k: int, seed: int):
    """Grouped stratified folds, with ``k`` lowered (to >= 2) when the data has too few groups."""
    from soundclass.data.splits import kfold

    for n in range(k, 1, -1):
        try:
            return kfold(y, n_splits=n, groups=groups, seed=seed)
        except ParameterError:
            continue
    raise ParameterError(f"the training part ({len(y)} clips) is too small for 2-fold cross-validation")


def cross_validate(
    name: str,
    config: Any,
    features: Sequence[np.ndarray],
    targets: np.ndarray,
    *,
    classes: Sequence[str],
    groups: Sequence[Any] | None,
    seconds_left: float,
    at_least_one: bool = False,
    durations: np.ndarray | None = None,
) -> dict[str, Any]:
    """Grouped k-fold scores of one candidate on the clips given (the training part).

    Parameters
    ----------
    name : str
        Registered model; ``config`` is its resolved :class:`TrainConfig`.
    features : sequence of np.ndarray, or StoredFeatures
        One per clip, the candidate's feature (stored ones are read on use).
    targets : np.ndarray [shape=(n,)]
    classes : sequence of str
    groups : sequence or None
        One per clip; a group is never on both sides of a fold.
    seconds_left : float
        What is left of the time budget.
    at_least_one : bool
        Run the first fold even when the prior estimate does not fit.
    durations : np.ndarray or None
        Typical clip durations in seconds, for the prior (see :func:`estimate_fold_seconds`).

    Returns
    -------
    dict
        The leaderboard row: ``model``, ``status`` (``'scored'`` or
        ``'skipped'``), ``folds`` (used), ``of_folds``, ``macro_f1_mean``,
        ``macro_f1_std``, ``accuracy_mean``, ``accuracy_std``, per-fold
        ``fold_macro_f1`` / ``fold_accuracy``, ``seconds``, ``note``.
    """
    targets = np.asarray(targets, dtype=np.int64)
    splits = _folds(targets, groups, k=config.auto_folds, seed=config.seed)
    row: dict[str, Any] = {"model": name, "status": "skipped", "folds": 0, "of_folds": len(splits),
                           "fold_macro_f1": [], "fold_accuracy": [], "seconds": 0.0, "note": ""}
    n_fold_train = len(targets) - len(targets) // len(splits)
    prior = estimate_fold_seconds(name, n_fold_train, epochs=getattr(config, "epochs", None),
                                  durations=durations)
    if prior is not None and prior * (1 + len(targets) / n_fold_train) > seconds_left and not at_least_one:
        row["note"] = (f"skipped: estimated {prior:.1f} s per fold ({n_fold_train} clips) and the final fit "
                       f"do not fit in the {max(seconds_left, 0):.1f} s left of the time budget")
        return row
    t0 = time.perf_counter()
    n_use = len(splits)
    for i, (tr, va) in enumerate(splits[:n_use]):
        if i >= n_use:
            break
        t_fold = time.perf_counter()
        s = _fold_scores(name, config, features, targets, tr, va, classes)
        row["fold_macro_f1"].append(s["macro_f1"])
        row["fold_accuracy"].append(s["accuracy"])
        if i == 0:  # what is left must also hold the final fit on all clips (~n / n_fold_train folds)
            took = time.perf_counter() - t_fold
            reserve = took * len(targets) / max(1, len(tr))
            fit_more = int((seconds_left - took - reserve) // took) if took > 0 else len(splits)
            n_use = max(1, min(len(splits), 1 + fit_more))
            if n_use < len(splits):
                row["note"] = (f"time budget: {n_use} of {len(splits)} folds (first fold took "
                               f"{took:.1f} s, {max(seconds_left - took, 0):.0f} s left)")
    f1, acc = np.asarray(row["fold_macro_f1"]), np.asarray(row["fold_accuracy"])
    row.update(status="scored", folds=len(f1), seconds=time.perf_counter() - t0,
               macro_f1_mean=float(f1.mean()), macro_f1_std=float(f1.std()),
               accuracy_mean=float(acc.mean()), accuracy_std=float(acc.std()))
    return row


def train_auto(dataset, config, *, out_dir: str | os.PathLike, progress: bool = True, executor: Any = None,
               val_paths: Collection[str] | None = None):
    """Choose the model by cross-validation on the training part and train it (see the module text).

    Parameters
    ----------
    dataset : Dataset
    config : TrainConfig
        ``model='auto'``; every other setting applies to each candidate.
    out_dir : path
        The run folder of the chosen model, plus ``auto.json``.
    progress : bool
    executor : concurrent.futures.Executor, optional
    val_paths : collection of str, optional
        Fixed validation clips instead of the ``val_size`` holdout (a fold of
        ``benchmarks/accuracy.py --folds``); never used to choose either.

    Returns
    -------
    TrainResult
        Of the chosen model, with ``auto`` = the leaderboard record
        (``chosen``, ``candidates`` rows of :func:`cross_validate`,
        ``time_budget``, ``seconds``, ``folds``).
    """
    from soundclass.training.config import resolve_config
    from soundclass.training.trainer import prepare_data, train_prepared

    if config.pretrained is not None:
        raise ParameterError("pretrained= needs one --model; --model auto chooses among several")
    names = candidate_list(config)
    n_clips = len(dataset)
    durations = sample_durations([it.path for it in dataset.items], seed=config.seed)
    epochs = {}
    configs = {}
    for name in names:
        configs[name] = resolve_config(config.replace(model=name))
        epochs[name] = configs[name].epochs

    def cost(i: int) -> tuple[float, int]:  # features + one fold; unknown models last, in the given order
        fold = estimate_fold_seconds(names[i], n_clips, epochs=epochs[names[i]], durations=durations)
        extract = estimate_extract_seconds(configs[names[i]], n_clips, cache=False, durations=durations)
        return (math.inf if fold is None else fold + extract, i)

    names = [names[i] for i in sorted(range(len(names)), key=cost)]

    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    best: tuple[float, str, Any] | None = None
    for name in names:
        left = config.time_budget - (time.perf_counter() - start)
        cfg = configs[name]
        n_train = int(n_clips * (1 - (config.val_size if config.val_size < 1 else 0)))
        n_fold = n_train - n_train // config.auto_folds
        prior = estimate_fold_seconds(name, n_fold, epochs=cfg.epochs, durations=durations)
        extract = estimate_extract_seconds(cfg, n_clips, cache=cfg.cache_dir is not None, durations=durations)
        first = best is None
        if prior is not None and extract + prior * (1 + n_train / n_fold) > left and not first:
            rows.append({"model": name, "status": "skipped", "folds": 0, "of_folds": config.auto_folds,
                         "seconds": 0.0, "note": f"skipped: estimated {extract:.1f} s of features, "
                         f"{prior:.1f} s per fold and the final fit do not fit in the {max(left, 0):.1f} s "
                         "left of the time budget"})
            continue
        t0 = time.perf_counter()
        try:
            data = prepare_data(dataset, cfg, progress=progress, executor=executor, val_paths=val_paths)
            tr = data.train_idx
            extract_s = time.perf_counter() - t0
            row = cross_validate(
                name, cfg, take(data.features, tr), data.targets[tr], classes=data.classes,
                groups=None if data.groups is None else [data.groups[i] for i in tr],
                seconds_left=left - extract_s, at_least_one=first, durations=durations)
        except SoundclassError as exc:
            rows.append({"model": name, "status": "failed", "folds": 0, "of_folds": config.auto_folds,
                         "seconds": time.perf_counter() - t0, "note": f"failed: {exc}"})
            continue
        row["seconds"] = time.perf_counter() - t0
        row["feature_seconds"] = extract_s
        rows.append(row)
        logger.info("auto: %s", _row_text(row))
        if row["status"] == "scored" and (best is None or row["macro_f1_mean"] > best[0]):
            best = (row["macro_f1_mean"], name, data)
    if best is None:
        raise ParameterError("--model auto: no candidate could be scored: "
                             + "; ".join(f"{r['model']} ({r['note']})" for r in rows))
    _, chosen, data = best
    cfg = configs[chosen]
    notes = []
    if cfg.folds >= 2 and chosen in _classical():
        cfg = cfg.replace(folds=0)
        notes.append(f"--folds {config.folds} not used: the chosen {chosen} is fitted once on the whole "
                     "training part (k-fold ensembles are for neural models)")
        logger.warning(notes[-1])
    record = {"chosen": chosen, "metric": "macro_f1", "time_budget": config.time_budget,
              "seconds": time.perf_counter() - start, "folds": config.auto_folds,
              "n_train": int(len(data.train_idx)), "candidates": rows, "notes": notes}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "auto.json", record, indent=2, allow_nan=True)
    result = train_prepared(data, cfg, out_dir=out, progress=progress)
    return dataclasses.replace(result, auto=record, warnings=[*result.warnings, *notes])


def _classical() -> tuple[str, ...]:
    from soundclass.models.classical import CLASSICAL_MODELS

    return CLASSICAL_MODELS


def _row_text(row: Mapping[str, Any]) -> str:
    if row["status"] != "scored":
        return f"{row['model']:<16} {row['note']}"
    return (f"{row['model']:<16} macro-F1 {row['macro_f1_mean']:.3f} +- {row['macro_f1_std']:.3f}  "
            f"accuracy {row['accuracy_mean']:.3f} +- {row['accuracy_std']:.3f}  "
            f"folds {row['folds']}/{row['of_folds']}  {row['seconds']:.1f} s"
            + (f"  ({row['note']})" if row.get("note") else ""))


def format_leaderboard(record: Mapping[str, Any]) -> str:
    """The leaderboard of :func:`train_auto` as terminal lines, the chosen model marked ``*``."""
    lines = [f"auto: grouped {record['folds']}-fold cross-validation on the training part "
             f"({record['n_train']} clips), {record['seconds']:.0f} s of a {record['time_budget']:.0f} s budget"]
    for row in sorted(record["candidates"], key=lambda r: -r.get("macro_f1_mean", -1.0)):
        mark = "*" if row["model"] == record["chosen"] else " "
        lines.append(f" {mark} {_row_text(row)}")
    lines.append(f"chosen: {record['chosen']} (best mean macro-F1), trained on the whole training part")
    return "\n".join(lines)
