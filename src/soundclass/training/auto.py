"""``--model auto``: choose the model by grouped cross-validation on the training part, then train it.

:func:`train_auto` is what :func:`soundclass.training.train` runs for
``config.model == 'auto'``: the candidates (``config.auto_candidates`` or
:data:`DEFAULT_CANDIDATES`) are scored by grouped stratified
``config.auto_folds``-fold cross-validation of the **training part only**
(:func:`soundclass.data.splits.kfold` with the clips' groups; the data split
exactly as a single-model run splits it): the validation part is never looked
at to choose.

1. The candidates are ordered by their estimated cost
   (:func:`estimate_extract_seconds` + :func:`estimate_fold_seconds`: priors for
   2 CPU cores that scale with the clips' durations, read from the headers of
   a sample of :data:`DURATION_SAMPLE` clips), cheapest first.
2. Each feature configuration is computed once per clip (through the cache
   with a cache dir, in memory without one) and shared by every candidate and
   fold that uses it; it is let go when no candidate still in the race needs it.
3. :func:`soundclass.training.race.race` scores them fold by fold within
   ``config.time_budget`` seconds (features, folds and the final fit of the
   winner): fold 1 of every candidate first, then more folds only for those
   close to the leader (successive halving); a neural fold stops at the epoch
   its validation curve can no longer reach the leader; every decision is in
   the candidate's ``note`` and said as a progress line on standard error
   (``auto: cnn fold 2/3 epoch 7/30 val macro-F1 0.412 (budget left 412 s)``).
4. The best mean macro-F1 on the folds every remaining candidate completed
   wins (ties: the cheaper one); it is trained on the whole training part by
   the normal path (:func:`~soundclass.training.trainer.train_prepared`) and
   evaluated on the validation part like any single-model run; the
   leaderboard goes to ``auto.json``, ``TrainResult.auto`` and from there into
   ``metrics.json`` and ``report.html``.

Neural candidates are fitted by :func:`soundclass.training.fitting.fit` on
each fold, with the fold's held-out part as its validation (early stopping
and best epoch), so their fold scores are a little optimistic; the classical
ones have no such selection.

A new candidate is one name in :data:`DEFAULT_CANDIDATES` plus its cost
priors: a line in ``_FIT_COST`` (classical; without one the generic
``_PROBE_FIT_COST`` is used) or ``_EPOCH_COST`` (neural; without one it has no
prior and is run after the others), and a line in ``_EXTRACT_COST`` for a new
feature kind.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.audio import info
from soundclass.data.splits import kfold
from soundclass.dsp.aisfx import AISFX_HOP_LENGTH, AISFX_SR, BLOCK_FRAMES, BLOCK_HOP
from soundclass.errors import ParameterError, SoundclassError
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.extraction.stored import take
from soundclass.inference.predictor import predict_logits
from soundclass.models import list_models
from soundclass.models.classical import is_classical
from soundclass.models.ensemble import ENSEMBLE_NAMES
from soundclass.training.classical import fit_classical
from soundclass.training.config import feature_config, resolve_config
from soundclass.training.data import clip_seconds_from_data
from soundclass.training.fitting import fit
from soundclass.training.race import EpochHook, FoldScore, race
from soundclass.training.trainer import prepare_data, train_prepared
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
DEFAULT_CANDIDATES = ("aisfx-probe", "whisper-probe", "fusion-probe", "logmel-logreg", "mfcc-svm", "cnn",
                      "aisfx", "whisper")

# Cost priors of the budget before a first fold is measured, on 2 CPU cores: ``(seconds per
# clip, seconds per second of audio the model sees)``, per fit for the classical models and per
# epoch for the neural ones (a sequence model sees each clip up to the training crop).  Measured
# here: cnn 15 ms per clip-epoch on 700 mixed clips seeing 2.6 s each (benchmarks/train_overhead.py);
# the classical fits with one BLAS thread (training/classical.py) on 320 FSDD clips of 60 classes:
# logmel-logreg 0.7 ms a clip, mfcc-svm 4 ms.  Unknown neural models have no prior (they are run
# after the others); a classical model without its own line gets _PROBE_FIT_COST.
_FIT_COST = {"aisfx-probe": (0.002, 0.0), "logmel-logreg": (0.002, 0.0), "mfcc-svm": (0.004, 0.0)}
_PROBE_FIT_COST = (0.004, 0.0)
_EPOCH_COST = {"cnn": (0.001, 0.0055), "cnn-wide": (0.002, 0.011), "seed-cnn": (0.003, 0.0),
               "seed-lstm": (0.001, 0.0015), "cnn6": (0.004, 0.02), "cnn10": (0.008, 0.04),
               "cnn14": (0.02, 0.1), "aisfx": (0.1, 0.0),  # aisfx trains on whole-block crops
               "whisper": (0.01, 0.12)}  # the 20 M-parameter encoder, forward and backward

# Feature priors by FeatureConfig.kind: (seconds per clip, seconds per second of audio) with 2
# worker processes; the aiSFX embedding costs per 100-frame block (~2.3 s, hop ~1.2 s, one at
# least): 0.12 s a block on one idle core, 0.2 s taken for a shared machine.  A frozen
# transformer embedding of ~0.05 s per second of audio on one core is (0.01, 0.03).
_EXTRACT_COST = {"aisfx-logmel": (0.002, 0.001), "mfcc": (0.002, 0.0005), "logmel": (0.002, 0.0005),
                 # Whisper-base's encoder: ~0.07 s per second of audio on one core (models/whisper.py)
                 "whisper-logmel": (0.002, 0.0005), "whisper": (0.01, 0.035), "fusion": (0.01, 0.06)}
_DEFAULT_EXTRACT_COST = (0.002, 0.0005)
_AISFX_BLOCK_SECONDS = 0.2


def candidate_list(config: Any) -> list[str]:
    """The candidates of ``config.auto_candidates`` (or the default), checked against the registry."""

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

    d = durations if durations is not None and durations.size else np.array([_ASSUMED_SECONDS])
    crop = clip_seconds_from_data(d * 100.0, frame_rate=100.0)
    return float(np.mean(np.minimum(d, crop)))


def estimate_fold_seconds(name: str, n_train: int, *, epochs: int | None,
                          durations: np.ndarray | None = None) -> float | None:
    """Prior training seconds of one fold of ``name`` on ``n_train`` clips (``None``: unknown).

    ``durations`` (seconds, e.g. :func:`sample_durations`) are the clips' typical lengths;
    without them clips of 2.5 s are assumed.
    """

    if name in _FIT_COST or is_classical(name):
        per_clip, per_second = _FIT_COST.get(name, _PROBE_FIT_COST)
        return n_train * (per_clip + per_second * _seen_seconds(durations))
    if name in _EPOCH_COST and epochs is not None:
        per_clip, per_second = _EPOCH_COST[name]
        return n_train * epochs * (per_clip + per_second * _seen_seconds(durations))
    return None


def estimate_extract_seconds(config: Any, n_clips: int, *, cache: bool,
                             durations: np.ndarray | None = None) -> float:
    """Prior feature seconds of ``n_clips`` clips for ``config``'s feature (a cache may make it 0)."""

    d = durations if durations is not None and durations.size else np.array([_ASSUMED_SECONDS])
    kind = feature_config(config).kind
    if kind == "aisfx":
        frames = 1 + np.floor(d * AISFX_SR / AISFX_HOP_LENGTH)  # centred frames of the front end
        blocks = 1 + np.maximum(frames - BLOCK_FRAMES, 0) // BLOCK_HOP  # as dsp.aisfx.frames_to_blocks
        per_clip = _AISFX_BLOCK_SECONDS * float(np.mean(blocks))
    else:
        a, b = _EXTRACT_COST.get(kind, _DEFAULT_EXTRACT_COST)
        per_clip = a + b * float(np.mean(d))
    return per_clip * n_clips * (0.5 if cache else 1.0)  # a cache may hold some already


# ------------------------------------------------------------------ the real candidates

def _folds(y: np.ndarray, groups: Sequence[Any] | None, *, k: int, seed: int):
    """Grouped stratified folds, with ``k`` lowered (to >= 2) when the data has too few groups."""

    for n in range(k, 1, -1):
        try:
            return kfold(y, n_splits=n, groups=groups, seed=seed)
        except ParameterError:
            continue
    raise ParameterError(f"the training part ({len(y)} clips) is too small for 2-fold cross-validation")


class _SharedFeatures:
    """:func:`~soundclass.training.trainer.prepare_data` once per feature configuration.

    Every candidate with the same :class:`~soundclass.config.FeatureConfig`
    gets the same prepared data (features in memory without a cache dir, read
    from the cache with one); it is let go when its last user leaves the race.
    """

    def __init__(self, dataset, users: Mapping[Any, Sequence[str]], *, progress: bool, executor: Any,
                 val_paths: Collection[str] | None):
        self.dataset, self.progress, self.executor, self.val_paths = dataset, progress, executor, val_paths
        self.users = {f: list(names) for f, names in users.items()}
        self.data: dict[Any, Any] = {}
        self.computed = 0  # prepare_data calls (a test counts them)

    def has(self, feature) -> bool:
        return feature in self.data

    def get(self, config):

        feature = feature_config(config)
        if feature not in self.data:
            desc = f"features ({', '.join(self.users.get(feature, [config.model]))})"
            self.data[feature] = prepare_data(self.dataset, config, progress=self.progress,
                                              executor=self.executor, val_paths=self.val_paths, desc=desc)
            self.computed += 1
        return self.data[feature]

    def release(self, name: str, feature) -> None:
        names = self.users.get(feature, [])
        if name in names:
            names.remove(name)
        if not names:
            self.data.pop(feature, None)


class _Candidate:
    """A registered model in the race: its features (shared), folds and one fold's fit."""

    def __init__(self, name: str, config: Any, *, shared: _SharedFeatures, n_clips: int,
                 durations: np.ndarray):

        self.name, self.config, self.shared, self.durations = name, config, shared, durations
        self.classical = is_classical(name)
        self.epochs = None if self.classical else int(config.epochs)
        self.feature = feature_config(config)
        self.n_clips, self.n_folds, self.prepared = n_clips, int(config.auto_folds), False
        val = config.val_size * n_clips if config.val_size < 1 else config.val_size
        self.n_train = max(2, int(n_clips - val))
        self.n_fold_train = max(1, self.n_train - self.n_train // self.n_folds)
        self.data = self.features = self.targets = self.splits = None

    def extract_prior(self) -> float:
        if self.shared.has(self.feature):
            return 0.0
        return estimate_extract_seconds(self.config, self.n_clips, cache=self.config.cache_dir is not None,
                                        durations=self.durations)

    def fold_prior(self) -> float | None:
        return estimate_fold_seconds(self.name, self.n_fold_train, epochs=self.epochs, durations=self.durations)

    def final_ratio(self) -> float:
        return self.n_train / self.n_fold_train

    def prepare(self) -> None:
        self.data = self.shared.get(self.config)
        tr = self.data.train_idx
        self.features, self.targets = take(self.data.features, tr), self.data.targets[tr]
        groups = None if self.data.groups is None else [self.data.groups[i] for i in tr]
        self.splits = _folds(self.targets, groups, k=self.config.auto_folds, seed=self.config.seed)
        self.n_folds, self.n_train = len(self.splits), len(tr)
        self.n_fold_train = max(1, self.n_train - self.n_train // self.n_folds)
        self.prepared = True

    def run_fold(self, i: int, on_epoch: EpochHook | None) -> FoldScore:
        """Fit on the other folds, score on fold ``i`` (indices into the training part)."""

        t0 = time.perf_counter()
        tr, va = self.splits[i]
        feats, y, classes = self.features, self.targets, self.data.classes
        epochs = None
        if self.classical:

            module = fit_classical(self.name, take(feats, tr), y[tr], seed=self.config.seed,
                                   n_classes=len(classes))
            proba = predict_logits(module, take(feats, va), input_kind="sequence", clip_frames=None)
        else:

            with tempfile.TemporaryDirectory(prefix="soundclass-auto-") as tmp:
                res = fit(take(feats, tr), y[tr], take(feats, va), y[va], classes=classes, config=self.config,
                          out_dir=tmp, progress=False, on_epoch=on_epoch)
            proba, epochs = res.val_proba, len(res.history)
        m = evaluate_predictions(y[va], np.argmax(proba, axis=1), classes=classes)
        return FoldScore(float(m["macro_f1"]), float(m["accuracy"]), len(va), time.perf_counter() - t0,
                         epochs=epochs)

    def release(self) -> None:
        self.features = self.targets = self.data = None
        self.shared.release(self.name, self.feature)


def _sayer(progress: bool) -> Callable[[str], None]:
    """Progress lines: on standard error (one line each, fine in a log file), or to the log when quiet."""
    def say(text: str) -> None:
        if progress:
            print(text, file=sys.stderr, flush=True)
        else:
            logger.info(text)
    return say


def cross_validate(name: str, config: Any, dataset, *, progress: bool = False, executor: Any = None,
                   val_paths: Collection[str] | None = None) -> dict[str, Any]:
    """Every fold of one candidate, with no budget and no race: its leaderboard row.

    The reference a race's choice is checked against (``benchmarks`` and tests);
    ``config`` is the ``--model auto`` config, ``name`` a registered model.
    """

    cfg = resolve_config(config.replace(model=name))
    shared = _SharedFeatures(dataset, {}, progress=progress, executor=executor, val_paths=val_paths)
    cand = _Candidate(name, cfg, shared=shared, n_clips=len(dataset), durations=np.array([]))
    rows, _, _ = race([cand], n_folds=config.auto_folds, time_budget=1e12, eliminate=False,
                      say=_sayer(progress))
    return rows[0]


def train_auto(dataset, config, *, out_dir: str | os.PathLike, progress: bool = True, executor: Any = None,
               val_paths: Collection[str] | None = None, eliminate: bool = True):
    """Choose the model by cross-validation on the training part and train it (see the module text).

    Parameters
    ----------
    dataset : Dataset
    config : TrainConfig
        ``model='auto'``; every other setting applies to each candidate.
    out_dir : path
        The run folder of the chosen model, plus ``auto.json``.
    progress : bool
        Progress bars, and the race's progress lines on standard error (else logged at INFO).
    executor : concurrent.futures.Executor, optional
    val_paths : collection of str, optional
        Fixed validation clips instead of the ``val_size`` holdout (a fold of
        ``benchmarks/accuracy.py --folds``); never used to choose either.
    eliminate : bool
        ``False``: no halving and no early stops; every candidate gets every fold
        that fits in the budget (the full evaluation the race is checked against).

    Returns
    -------
    TrainResult
        Of the chosen model, with ``auto`` = the leaderboard record
        (``chosen``, ``basis``, ``candidates`` rows, ``time_budget``,
        ``seconds`` (choosing), ``final_seconds``, ``folds``).  A row has
        ``model``, ``status`` (``'scored'``, ``'skipped'`` or ``'failed'``),
        ``dropped``, ``folds`` (used), ``of_folds``, ``macro_f1_mean``,
        ``macro_f1_std``, ``accuracy_mean``, ``accuracy_std``, per-fold
        ``fold_macro_f1`` / ``fold_accuracy`` / ``fold_n_val`` /
        ``fold_seconds``, ``feature_seconds``, ``seconds`` and ``note`` (every
        decision about it).
    """

    if config.pretrained is not None:
        raise ParameterError("pretrained= needs one --model; --model auto chooses among several")
    names = candidate_list(config)
    n_clips = len(dataset)
    durations = sample_durations([it.path for it in dataset.items], seed=config.seed)
    configs = {name: resolve_config(config.replace(model=name)) for name in names}

    def cost(i: int) -> tuple[float, int]:  # features + one fold; unknown models last, in the given order
        cfg = configs[names[i]]
        fold = estimate_fold_seconds(names[i], n_clips, epochs=cfg.epochs, durations=durations)
        extract = estimate_extract_seconds(cfg, n_clips, cache=False, durations=durations)
        return (math.inf if fold is None else fold + extract, i)

    names = [names[i] for i in sorted(range(len(names)), key=cost)]
    users: dict[Any, list[str]] = {}
    for name in names:
        users.setdefault(feature_config(configs[name]), []).append(name)
    shared = _SharedFeatures(dataset, users, progress=progress, executor=executor, val_paths=val_paths)
    cands = [_Candidate(n, configs[n], shared=shared, n_clips=n_clips, durations=durations) for n in names]
    say = _sayer(progress)
    start = time.perf_counter()
    rows, chosen, basis = race(cands, n_folds=config.auto_folds, time_budget=config.time_budget,
                               eliminate=eliminate, say=say)
    if chosen is None:
        raise ParameterError("--model auto: no candidate could be scored: "
                             + "; ".join(f"{r['model']} ({r['note']})" for r in rows))
    winner = next(c for c in cands if c.name == chosen)
    data = winner.data
    for c in cands:  # only the winner's features are needed from here
        if c is not winner and c.data is not None:
            c.release()
    cfg = configs[chosen]
    notes = []
    if cfg.folds >= 2 and winner.classical:
        cfg = cfg.replace(folds=0)
        notes.append(f"--folds {config.folds} not used: the chosen {chosen} is fitted once on the whole "
                     "training part (k-fold ensembles are for neural models)")
        logger.warning(notes[-1])
    seconds = time.perf_counter() - start
    record = {"chosen": chosen, "metric": "macro_f1", "basis": basis, "time_budget": config.time_budget,
              "seconds": seconds, "folds": config.auto_folds, "eliminate": eliminate,
              "n_train": int(len(data.train_idx)), "candidates": rows, "notes": notes}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "auto.json", record, indent=2, allow_nan=True)
    say(f"auto: chose {chosen} ({basis}); training it on the whole training part "
        f"({len(data.train_idx)} clips, budget left {max(config.time_budget - seconds, 0):.0f} s)")
    result = train_prepared(data, cfg, out_dir=out, progress=progress)
    record["final_seconds"] = time.perf_counter() - start - seconds
    write_json_atomic(out / "auto.json", record, indent=2, allow_nan=True)
    return dataclasses.replace(result, auto=record, warnings=[*result.warnings, *notes])


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
             f"({record['n_train']} clips), {record['seconds']:.0f} s of a {record['time_budget']:.0f} s budget"
             + (f" and {record['final_seconds']:.0f} s for the final fit" if "final_seconds" in record else "")]
    for row in sorted(record["candidates"], key=lambda r: -r.get("macro_f1_mean", -1.0)):
        mark = "*" if row["model"] == record["chosen"] else " "
        lines.append(f" {mark} {_row_text(row)}")
    basis = record.get("basis") or "best mean macro-F1"
    lines.append(f"chosen: {record['chosen']} ({basis}), trained on the whole training part")
    return "\n".join(lines)
