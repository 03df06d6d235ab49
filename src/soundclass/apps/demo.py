"""The end-to-end demo: generate data, train, evaluate, report, predict a submission.

Everything happens in one run folder::

    RUN_DIR/data/train/<class>/*.wav     generated labelled clips (synth.make_demo_dataset)
    RUN_DIR/data/test/<class>/*.wav      held-out clips from other sound sources
    RUN_DIR/cache/                       feature cache
    RUN_DIR/train/                       checkpoint/, history.json, split.json, config.json,
                                         report.html, metrics.json, confusion.png, history.png,
                                         misclassified.csv, predictions.csv, errors/
    RUN_DIR/submission.csv               name,label for every held-out clip

The sizes and epochs are set through :class:`DemoConfig` and the ordinary
:class:`~soundclass.training.TrainConfig`; the trainer is not special-cased.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import ParameterError

__all__ = ["DemoConfig", "DemoResult", "DEMO", "QUICK_DEMO", "run_demo"]


@dataclass(frozen=True)
class DemoConfig:
    """Sizes of the demo.

    Parameters
    ----------
    n_per_class : int
        Generated training clips per class (validation is split from them).
    n_test_per_class : int
        Held-out clips per class, from sound sources unseen in training.
    n_sources : int
        Sound sources (recording groups) per class; the validation split is
        grouped by source.
    epochs : int
        Training epochs of the default model.
    clip_seconds : float or None
        Training window (``TrainConfig.clip_seconds``; the clips last 1-3 s).
    batch_size : int or None
        ``TrainConfig.batch_size``: small data needs small batches to get
        enough optimizer steps in few epochs.
    model : str
        Registry name of the model trained.
    seed : int
        Seeds the data generation (test data uses ``seed + 1``) and training.
    n_corrupt : int
        Broken files added to the training and to the held-out data, to show
        that they are reported (report, ``submission.failed.csv``) and
        never stop the run.
    """

    n_per_class: int = 48
    n_test_per_class: int = 10
    n_sources: int = 24
    epochs: int = 10
    clip_seconds: float | None = 1.5
    batch_size: int | None = 16
    model: str = "cnn"
    seed: int = 0
    n_corrupt: int = 1

    def __post_init__(self) -> None:
        for name in ("n_per_class", "n_test_per_class", "n_sources", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ParameterError(f"{name}={value!r} must be a positive integer")
        if self.n_sources < 2:
            raise ParameterError(f"n_sources={self.n_sources} must be >= 2 (train and validation sources)")
        if isinstance(self.n_corrupt, bool) or not isinstance(self.n_corrupt, int) or self.n_corrupt < 0:
            raise ParameterError(f"n_corrupt={self.n_corrupt!r} must be a non-negative integer")


DEMO = DemoConfig()
QUICK_DEMO = DemoConfig(n_per_class=16, n_test_per_class=4, n_sources=8, epochs=4)


@dataclass(frozen=True, eq=False)
class DemoResult:
    """Where the demo put things and how well it did."""

    run_dir: Path
    train_dir: Path
    checkpoint_dir: Path
    report: Path
    submission: Path
    val_metrics: dict
    test_accuracy: float
    n_test: int
    seconds: float


def _say(log: Callable[[str], Any] | None, text: str) -> None:
    if log is not None:
        log(text)


def run_demo(
    run_dir: str | os.PathLike,
    *,
    config: DemoConfig = DEMO,
    progress: bool = True,
    n_jobs: int | None = None,
    executor: Any = None,
    log: Callable[[str], Any] | None = print,
) -> DemoResult:
    """Generate the demo data, train, evaluate, write the report and a submission.

    Parameters
    ----------
    run_dir : path
        Created if needed; see the module docstring for its layout.
    config : DemoConfig
        :data:`DEMO` (default) or :data:`QUICK_DEMO`.
    progress : bool
        Progress bars of feature extraction and training.
    n_jobs, executor
        Feature extraction parallelism (see :func:`soundclass.extraction.cache.get_features`).
    log : callable or None
        Receives one line per stage (default ``print``).

    Returns
    -------
    DemoResult
    """
    from soundclass.data.synth import make_demo_dataset
    from soundclass.evaluation.evaluate import evaluate_training
    from soundclass.inference.predict import predict_paths
    from soundclass.inference.submission import write_submission
    from soundclass.models import model_spec
    from soundclass.training import TrainConfig, train

    t0 = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    sr = model_spec(config.model).feature.sr
    _say(log, f"generating {config.n_per_class} training and {config.n_test_per_class} "
              f"held-out clips per class in {run_dir / 'data'}")
    train_set = make_demo_dataset(run_dir / "data" / "train", n_per_class=config.n_per_class,
                                  sr=sr, seed=config.seed, n_sources=config.n_sources,
                                  n_corrupt=config.n_corrupt)
    test_set = make_demo_dataset(run_dir / "data" / "test", n_per_class=config.n_test_per_class,
                                 sr=sr, seed=config.seed + 1, n_sources=max(2, config.n_sources // 2),
                                 n_corrupt=config.n_corrupt)

    train_config = TrainConfig(
        model=config.model, epochs=config.epochs, clip_seconds=config.clip_seconds,
        batch_size=config.batch_size, seed=config.seed,
        cache_dir=str(run_dir / "cache"), n_jobs=n_jobs,
    )
    _say(log, f"training {config.model} for {config.epochs} epochs on {len(train_set)} clips "
              f"({len(train_set.classes)} classes)")
    train_dir = run_dir / "train"
    result = train(train_set, train_config, out_dir=train_dir, progress=progress, executor=executor)
    ev = evaluate_training(result, title=f"soundclass demo: {config.model}, validation split")

    _say(log, f"predicting {len(test_set)} held-out clips")
    preds = predict_paths(result.checkpoint_dir, test_set.paths, n_jobs=n_jobs,
                          cache_dir=run_dir / "cache", progress=progress, executor=executor)
    submission = write_submission(preds, run_dir / "submission.csv")
    index = {c: i for i, c in enumerate(preds.classes)}
    truth = np.array([index[lab] for lab in test_set.labels])
    ok = preds.ok
    test_accuracy = float(np.mean(preds.predicted[ok] == truth[ok])) if ok.any() else 0.0
    return DemoResult(
        run_dir=run_dir, train_dir=train_dir, checkpoint_dir=Path(result.checkpoint_dir),
        report=ev.files["report"], submission=submission, val_metrics=ev.metrics,
        test_accuracy=test_accuracy, n_test=int(ok.sum()), seconds=time.perf_counter() - t0,
    )
