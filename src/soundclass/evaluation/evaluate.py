"""Evaluating a model on labelled clips and writing the run folder.

:func:`evaluate_run` is the one place that turns true labels and predicted
probabilities into the evaluation files:

- ``metrics.json``: accuracy, macro-F1, balanced accuracy, log loss, per-class
  precision/recall/F1/support, confusion matrix, skipped files;
- ``predictions.csv``: ``path,true,predicted,confidence,proba_<class>...``;
- ``misclassified.csv``: ``path,true,predicted,confidence,top3``, most
  confident mistakes first;
- ``confusion.png``, ``history.png`` (learning curves, when a history is known);
- ``reliability.png``: reliability diagrams before and after temperature scaling;
- ``report.html`` (see :mod:`soundclass.evaluation.report`).

:func:`evaluate_checkpoint` computes the probabilities of a labelled dataset
with a checkpoint first; :func:`evaluate_training` reuses the validation
probabilities a training run already computed (no second forward pass).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.checkpoint.format import load_checkpoint, resolve_checkpoint
from soundclass.data.dataset import Dataset, skipped_note
from soundclass.errors import DatasetError, ParameterError
from soundclass.evaluation.calibration_report import calibration_summary
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.evaluation.report import write_html_report
from soundclass.inference.calibration import calibrate_proba
from soundclass.inference.predict import predict_paths
from soundclass.inference.predictions import top_k_labels
from soundclass.util.atomic import write_json_atomic
from soundclass.util.csvfile import write_csv

__all__ = [
    "Evaluation",
    "evaluate_run",
    "evaluate_checkpoint",
    "evaluate_training",
    "load_history",
    "misclassified_rows",
    "history_columns",
    "oof_summary",
]


@dataclass(frozen=True, eq=False)
class Evaluation:
    """What :func:`evaluate_run` wrote.

    Attributes
    ----------
    out_dir : Path
    metrics : dict
        The content of ``metrics.json``.
    files : dict
        ``name -> Path`` of every file written (``metrics``, ``predictions``,
        ``misclassified``, ``confusion``, ``history``, ``report``).
    """

    out_dir: Path
    metrics: dict
    files: dict


def _plot_confusion_png(cm: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    from soundclass.plots import new_figure, plot_confusion, save_figure

    side = min(4.0 + 0.45 * len(classes), 16.0)
    fig, ax = new_figure(figsize=(side + 1.0, side))
    plot_confusion(cm, classes=list(classes), ax=ax)
    return Path(save_figure(fig, path))


def history_columns(history: Any) -> dict[str, list[float]]:
    """``{name: one value per epoch}`` from a history given per epoch or per name.

    The trainer's ``history.json`` is a list of per-epoch dicts (``epoch``,
    ``train_loss``, ``val_loss``, ``val_accuracy``, ...); :func:`soundclass.plots.plot_history`
    takes columns.  Non-numeric entries are dropped.
    """
    if isinstance(history, Mapping):
        return {str(k): list(v) for k, v in history.items()}
    rows = [r for r in history if isinstance(r, Mapping)]
    keys = [k for k in dict.fromkeys(k for r in rows for k in r)
            if all(isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool) for r in rows)]
    return {k: [float(r[k]) for r in rows] for k in keys}


def _plot_history_png(history: Any, path: Path, *, monitor: str | None = None) -> Path:
    from soundclass.plots import new_figure, plot_history, save_figure

    columns = history_columns(history)
    fig, ax = new_figure(figsize=(8.0, 4.5))
    plot_history(columns, ax=ax, monitor=monitor if monitor in columns else None)
    return Path(save_figure(fig, path))


def _load_run_json(run_dir: str | os.PathLike, name: str) -> Any | None:
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_history(run_dir: str | os.PathLike) -> Any | None:
    """The ``history.json`` of a training run folder, or ``None`` if absent/unreadable."""
    return _load_run_json(run_dir, "history.json")


def _monitor_key(train_config: Mapping[str, Any] | None) -> str | None:
    """History key of the quantity that chose the best epoch (``val_macro_f1``, ``val_loss``)."""
    monitor = (train_config or {}).get("monitor")
    return f"val_{monitor}" if monitor else None


def misclassified_rows(
    paths: Sequence[str], y_true: np.ndarray, proba: np.ndarray, *, classes: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per wrong prediction, most confident mistakes first.

    Returns
    -------
    list of dict
        ``path``, ``true``, ``predicted``, ``confidence`` (probability of the
        predicted class) and ``top3`` (``"a:0.61 b:0.20 c:0.05"``).
    """
    y_pred = np.argmax(proba, axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    k = min(3, len(classes))
    index = {c: j for j, c in enumerate(classes)}
    rows = []
    for i in wrong:
        top = top_k_labels(proba[i : i + 1], classes=classes, k=k)[0]
        rows.append({
            "path": paths[i],
            "true": classes[y_true[i]],
            "predicted": classes[y_pred[i]],
            "confidence": float(proba[i, y_pred[i]]),
            "top3": " ".join(f"{c}:{proba[i, index[c]]:.2f}" for c in top),
        })
    rows.sort(key=lambda r: -r["confidence"])
    return rows


def _check_labels(labels: Sequence[str], classes: Sequence[str], *, where: str) -> None:
    """Raise :class:`DatasetError` naming the labels that are not classes of the model."""
    known = set(classes)
    unknown = sorted({str(lab) for lab in labels if lab not in known})
    if unknown:
        raise DatasetError(
            f"{where}: label(s) {', '.join(unknown)} are not classes of the model ({', '.join(classes)})"
        )


def _check_inputs(paths, labels, proba, classes) -> tuple[np.ndarray, np.ndarray]:
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (len(paths), len(classes)):
        raise ParameterError(
            f"proba.shape={proba.shape} must be (len(paths)={len(paths)}, n_classes={len(classes)})"
        )
    if len(labels) != len(paths):
        raise ParameterError(f"{len(labels)} labels given for {len(paths)} paths")
    _check_labels(labels, classes, where="evaluation")
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[lab] for lab in labels], dtype=np.int64), proba


def evaluate_run(
    paths: Sequence[str],
    labels: Sequence[str],
    proba: np.ndarray,
    *,
    classes: Sequence[str],
    out_dir: str | os.PathLike,
    title: str = "soundclass evaluation",
    history: Any | None = None,
    monitor: str | None = None,
    failures: Mapping[str, str] | None = None,
    warnings: Sequence[str] = (),
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    oof: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Evaluation:
    """Write every evaluation file of labelled clips with known probabilities.

    Parameters
    ----------
    paths : sequence of str [shape=(n,)]
        The evaluated clips.
    labels : sequence of str [shape=(n,)]
        Their true class names (each one of ``classes``).
    proba : np.ndarray [shape=(n, n_classes)]
        Predicted probabilities, columns in ``classes`` order.
    classes : sequence of str
        The model's class names.
    out_dir : path
        Created if needed.
    title : str
        Title of the HTML report.
    history : optional
        The training history (``history.json`` content) for the learning curves.
    monitor : str, optional
        The history key that chose the best epoch (e.g. ``val_macro_f1``),
        marked on the learning curves.
    failures : mapping, optional
        ``path -> reason`` of clips that could not be evaluated.
    warnings : sequence of str
        Shown in the report and stored in ``metrics.json``.
    config : mapping, optional
        The configuration shown in the report.
    extra : mapping, optional
        More JSON-ready entries for ``metrics.json`` (e.g. checkpoint, tta).
    oof : mapping, optional
        Out-of-fold metrics of a k-fold run (:func:`oof_summary`): stored as
        ``metrics.json`` ``oof`` and shown in their own report section.
    calibration : mapping, optional
        The checkpoint's calibration (``proba`` are calibrated with its
        temperature): ``metrics.json`` ``calibration`` gets ECE and log loss
        before/after and the "unknown" rate, ``reliability.png`` the diagram.

    Returns
    -------
    Evaluation

    Raises
    ------
    DatasetError
        If a label is not a class of the model.
    ParameterError
        On inconsistent shapes or an empty evaluation set.
    """
    classes = [str(c) for c in classes]
    paths = [os.fspath(p) for p in paths]
    y_true, proba = _check_inputs(paths, labels, proba, classes)
    failures = dict(failures or {})
    y_pred = np.argmax(proba, axis=1)
    metrics = evaluate_predictions(y_true, y_pred, classes=classes, proba=proba)
    metrics.update({
        "n_failed": len(failures),
        "failures": failures,
        "warnings": list(warnings),
        **dict(extra or {}),
    })
    if oof:
        metrics["oof"] = dict(oof)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    files["predictions"] = write_csv(
        out / "predictions.csv",
        ["path", "true", "predicted", "confidence", *(f"proba_{c}" for c in classes)],
        [
            [p, classes[t], classes[q], f"{proba[i, q]:.6f}", *(f"{v:.6f}" for v in proba[i])]
            for i, (p, t, q) in enumerate(zip(paths, y_true, y_pred, strict=True))
        ],
    )
    wrong = misclassified_rows(paths, y_true, proba, classes=classes)
    files["misclassified"] = write_csv(
        out / "misclassified.csv",
        ["path", "true", "predicted", "confidence", "top3"],
        [[r["path"], r["true"], r["predicted"], f"{r['confidence']:.6f}", r["top3"]] for r in wrong],
    )
    cal_summary, files["reliability"] = calibration_summary(proba, y_true, calibration=calibration, out_dir=out)
    metrics["calibration"] = cal_summary
    files["confusion"] = _plot_confusion_png(np.asarray(metrics["confusion_matrix"]), classes, out / "confusion.png")
    if history:
        files["history"] = _plot_history_png(history, out / "history.png", monitor=monitor)
    write_json_atomic(out / "metrics.json", metrics, indent=2, allow_nan=True)
    files["metrics"] = out / "metrics.json"

    counts = Counter(classes[t] for t in y_true)
    summary = {
        "evaluated clips": len(paths),
        "skipped clips": len(failures),
        "classes": len(classes),
        "clips per class": {c: counts.get(c, 0) for c in classes},
    }
    dup = dict(extra or {}).get("duplicates")
    if dup:
        summary["duplicates tied before the split"] = (
            f"{dup.get('tied_clips', 0)} clips in {dup.get('duplicate_sets', 0)} sets "
            f"({dup.get('exact_duplicate_sets', 0)} byte-identical, {dup.get('near_duplicate_sets', 0)} near)")
    files["report"] = write_html_report(
        out, title=title, metrics=metrics, classes=classes,
        history_png=files.get("history"), confusion_png=files["confusion"],
        misclassified=wrong, dataset_summary=summary, config=config,
        warnings=warnings, failures=failures, oof=oof, auto=metrics.get("auto"),
        calibration=cal_summary, reliability_png=files["reliability"],
    )
    return Evaluation(out, metrics, files)


def evaluate_checkpoint(
    checkpoint_path: str | os.PathLike,
    dataset: Dataset,
    *,
    out_dir: str | os.PathLike,
    tta: int = 1,
    n_jobs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    executor: Any = None,
    batch_size: int = 64,
) -> Evaluation:
    """Evaluate a checkpoint on a labelled dataset and write the evaluation files.

    Clips that cannot be decoded are skipped and listed (``metrics.json``
    ``failures`` and the report); the learning curves come from the run's
    ``history.json`` when the checkpoint sits in a training run folder.

    Parameters
    ----------
    checkpoint_path : path
        A checkpoint folder or a training run folder.
    dataset : Dataset
        Labelled clips; every label must be a class of the checkpoint.
    out_dir : path
    tta : int
        Test-time augmentation windows (see :func:`soundclass.inference.predict.predict_paths`).
    n_jobs, cache_dir, progress, executor, batch_size
        Passed to :func:`soundclass.inference.predict.predict_paths`.

    Returns
    -------
    Evaluation
    """
    ckpt_dir = resolve_checkpoint(checkpoint_path)
    ckpt = load_checkpoint(ckpt_dir)
    labels = dataset.labels
    if any(lab is None for lab in labels):
        missing = next(it.path for it in dataset.items if it.label is None)
        raise DatasetError(f"{missing}: has no label (evaluation needs a labelled dataset)")
    _check_labels(labels, ckpt.classes, where=f"{dataset.root} vs the model in {ckpt_dir}")
    preds = predict_paths(
        ckpt, dataset.paths, tta=tta, n_jobs=n_jobs, cache_dir=cache_dir,
        progress=progress, batch_size=batch_size, executor=executor,
    )
    ok = preds.ok
    if not ok.any():
        raise DatasetError(f"{dataset.root}: none of the {len(ok)} clips could be decoded")
    keep = np.flatnonzero(ok)
    note = skipped_note(dataset.skipped, root=dataset.root)  # files of DATA_DIR that are not audio
    return evaluate_run(
        [preds.paths[i] for i in keep],
        [labels[i] for i in keep],
        preds.proba[keep],
        classes=ckpt.classes,
        out_dir=out_dir,
        title=f"soundclass evaluation: {ckpt.model_name} on {os.path.basename(os.path.normpath(dataset.root))}",
        history=load_history(ckpt_dir.parent),
        monitor=_monitor_key(ckpt.train_config),
        failures=dict(preds.failures),
        config={"checkpoint": os.fspath(ckpt_dir), "model": ckpt.model_name, "tta": tta,
                "train_config": ckpt.train_config},
        extra={"checkpoint": os.fspath(ckpt_dir), "model": ckpt.model_name, "tta": tta,
               "split": "evaluation", "data": os.fspath(dataset.root)},
        calibration=ckpt.meta.get("calibration"),
        warnings=[note] if note else [],
    )


def evaluate_training(
    result: Any,
    *,
    out_dir: str | os.PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Evaluation:
    """Evaluation files for the validation split of a finished training run.

    Uses ``result.val_items`` / ``result.val_proba`` as computed by the
    trainer (no second forward pass), its history, failures and warnings.

    Parameters
    ----------
    result : soundclass.training.TrainResult
    out_dir : path, optional
        Default: the run folder (parent of ``result.checkpoint_dir``).
    config : mapping, optional
        The training configuration shown in the report; default: the run's
        resolved ``config.json``.
    title : str, optional

    Returns
    -------
    Evaluation
    """
    ckpt_dir = Path(result.checkpoint_dir)
    out = Path(out_dir) if out_dir is not None else ckpt_dir.parent
    items = list(result.val_items)
    if not items:
        raise DatasetError(f"{ckpt_dir}: the training run has no validation clips to evaluate")
    failures = dict(result.failures)  # (path, reason) pairs
    if config is None:
        config = _load_run_json(ckpt_dir.parent, "config.json")
    oof = oof_summary(getattr(result, "oof", None))
    split = "out-of-fold" if oof and oof.get("is_validation") else "validation"
    calibration = getattr(result, "calibration", None)
    proba = np.asarray(result.val_proba)
    if calibration:  # shown as predict gives them: with the fitted temperature
        proba = calibrate_proba(proba, temperature=float(calibration["temperature"]))
    duplicates = getattr(result, "duplicates", None)
    return evaluate_run(
        [it.path for it in items],
        [it.label for it in items],
        proba,
        classes=result.classes,
        out_dir=out,
        title=title or f"soundclass training run: {split} ({len(items)} clips)",
        history=result.history,
        monitor=_monitor_key(config),
        failures=failures,
        warnings=list(result.warnings),
        config=config,
        extra={"checkpoint": os.fspath(ckpt_dir), "split": split,
               "best_epoch": result.best_epoch,
               **({"duplicates": {k: v for k, v in duplicates.items() if k != "near_duplicates"}}
                  if duplicates else {}),
               **({"auto": dict(result.auto)} if getattr(result, "auto", None) else {})},
        oof=oof,
        calibration=calibration,
    )


def oof_summary(oof: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The out-of-fold entry of ``metrics.json`` from a k-fold run's ``TrainResult.oof``.

    Keeps the scalar scores (``accuracy``, ``macro_f1``, ``balanced_accuracy``,
    ``log_loss``, ``n``, ``n_folds``, ...), ``per_class``, the ``oof.csv``
    path (``file``), ``is_validation`` (the OOF predictions are the run's
    evaluation, ``val_size=0``) and the members' ``best_epochs``; ``None``
    without folds.
    """
    if not oof:
        return None
    keep = ("per_class", "file", "is_validation", "best_epochs", "classes")
    return {k: v for k, v in oof.items()
            if k in keep or (isinstance(v, (int, float)) and not isinstance(v, bool))}

