"""``fit`` for the classical models: one scikit-learn fit instead of epochs, same run folder.

:func:`fit_classical_run` is what :func:`soundclass.training.trainer.train_model`
calls for the models of :func:`soundclass.models.classical.is_classical`
(``mfcc-svm``, ``logmel-logreg``, and the probes ``aisfx-probe``, ``whisper-probe``,
``fusion-probe``): it fits
:func:`soundclass.training.classical.fit_classical` on the training part,
writes ``checkpoint/`` (the module carries its own standardisation, so no
``norm_mean``/``norm_std``; whole clips, so no ``clip_frames``),
``config.json`` and a one-row ``history.json``, and scores the validation part
through the saved checkpoint, so the evaluation files are those of a neural run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.errors import ParameterError
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import predict_logits
from soundclass.training.classical import fit_classical
from soundclass.training.config import TrainConfig, config_json, feature_config, resolve_config
from soundclass.training.fitting import FitResult
from soundclass.util.atomic import write_json_atomic

__all__ = ["fit_classical_run"]


def fit_classical_run(
    train_features: Sequence[np.ndarray],
    train_targets: Sequence[int],
    val_features: Sequence[np.ndarray],
    val_targets: Sequence[int],
    *,
    classes: Sequence[str],
    config: TrainConfig,
    out_dir: str | os.PathLike,
) -> FitResult:
    """Fit a classical model on the training part, save it, score the validation part.

    Parameters
    ----------
    train_features, val_features : sequence of np.ndarray [shape=(n_features, t_i)]
        Raw per-clip features of ``feature_config(config)``; ``val_features`` may be empty.
    train_targets, val_targets : sequence of int
        Class indices into ``classes``.
    classes : sequence of str
    config : TrainConfig
        ``config.model`` is a classical model; ``seed`` seeds the fit.
    out_dir : path
        Receives ``checkpoint/``, ``config.json`` and ``history.json``.

    Returns
    -------
    FitResult
        ``history`` has one row (epoch 0, the validation scores and the fit
        seconds); ``best_epoch`` is 0; ``last_dir`` is the checkpoint.
    """
    config = resolve_config(config)
    classes = tuple(str(c) for c in classes)
    if len(classes) < 2:
        raise ParameterError(f"need at least 2 classes, got {len(classes)}: {classes}")
    y_train = np.asarray(train_targets, dtype=np.int64)
    y_val = np.asarray(val_targets, dtype=np.int64)
    if len(train_features) != y_train.size or len(val_features) != y_val.size:
        raise ParameterError("features and targets have different lengths")
    feature = feature_config(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run_config = config_json(config)
    write_json_atomic(out / "config.json", run_config, allow_nan=True)

    t0 = time.perf_counter()
    module = fit_classical(config.model, train_features, y_train, seed=config.seed, n_classes=len(classes))
    seconds = time.perf_counter() - t0
    ckpt = out / "checkpoint"
    val_proba, row, summary = None, {"epoch": 0, "seconds": seconds}, {"epoch": 0}
    if len(val_features):
        logits = predict_logits(module, val_features, input_kind="sequence", clip_frames=None)
        val_proba = softmax(logits)
        m = evaluate_predictions(y_val, np.argmax(val_proba, axis=1), classes=classes, proba=val_proba)
        summary.update({k: v for k, v in m.items() if k not in ("per_class", "confusion_matrix", "classes")})
        row.update({"val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"]})
    save_checkpoint(ckpt, module, model_name=config.model, model_kwargs=module.model_kwargs,
                    feature=feature, classes=classes, train_config=run_config, clip_frames=None,
                    metrics=summary)
    history = [row]
    write_json_atomic(out / "history.json", history, allow_nan=True)
    if val_proba is not None:  # through the saved checkpoint: what predict/evaluate will see
        best = load_checkpoint(ckpt)
        val_proba = softmax(predict_logits(best.model, val_features, input_kind=best.input,
                                           clip_frames=best.clip_frames, norm_mean=best.norm_mean,
                                           norm_std=best.norm_std))
    return FitResult(
        checkpoint_dir=ckpt, last_dir=ckpt, history=history, best_epoch=0, config=config,
        clip_frames=None, norm_mean=None, norm_std=None, val_proba=val_proba, stopped_early=False,
        model=module,
    )
