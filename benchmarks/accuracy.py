"""Accuracy benchmark: train each model with its defaults on the same grouped split.

Usage::

    python benchmarks/accuracy.py DATA_DIR [--group-pattern REGEX] \\
        [--models seed-cnn seed-lstm cnn] [--epochs N] [-o OUT_DIR]

    # FSDD, speaker-grouped (6 speakers: no speaker in both train and validation)
    python benchmarks/accuracy.py ../shared/datasets/fsdd --group-pattern '^\\d+_(?P<group>[a-z]+)_'

Every model gets the same :class:`~soundclass.training.TrainConfig` apart from
``model`` (same ``seed``, ``val_size`` and groups), so the trainer's seeded
holdout gives every model the same validation clips; the script checks this
and says so.  Prints a markdown table (model, parameters, validation accuracy,
macro-F1, balanced accuracy, training minutes) and writes it with the raw
numbers to ``OUT_DIR/results.md`` and ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from soundclass.data.dataset import discover
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.inference.checkpoint import load_checkpoint
from soundclass.models import list_models
from soundclass.training import TrainConfig, train

DEFAULT_MODELS = ("seed-cnn", "seed-lstm", "cnn")


def run_model(dataset, model: str, *, out_dir: Path, epochs: int | None, group_pattern: str | None,
              val_size: float, seed: int, cache_dir: str | None, n_jobs: int | None,
              progress: bool) -> dict:
    """Train one model and return its benchmark row."""
    config = TrainConfig(model=model, epochs=epochs, group_pattern=group_pattern, val_size=val_size,
                         seed=seed, cache_dir=cache_dir, n_jobs=n_jobs)
    t0 = time.perf_counter()
    result = train(dataset, config, out_dir=out_dir / model, progress=progress)
    minutes = (time.perf_counter() - t0) / 60.0
    index = {c: i for i, c in enumerate(result.classes)}
    y_true = np.array([index[it.label] for it in result.val_items])
    proba = np.asarray(result.val_proba)
    m = evaluate_predictions(y_true, proba.argmax(axis=1), classes=result.classes, proba=proba)
    net = load_checkpoint(result.checkpoint_dir).model
    return {
        "model": model,
        "params": int(sum(p.numel() for p in net.parameters())),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "log_loss": m["log_loss"],
        "train_minutes": minutes,
        "epochs_run": len(result.history),
        # the best epoch is chosen on the validation clips themselves (optimistic);
        # the last epoch's accuracy involves no such choice
        "last_epoch_accuracy": float(result.history[-1]["val_accuracy"]),
        "best_epoch": result.best_epoch,
        "n_val": len(result.val_items),
        "n_failed": len(result.failures),
        "val_paths": sorted(it.path for it in result.val_items),
    }


def markdown_table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| model | params | val accuracy | macro-F1 | balanced accuracy | last-epoch accuracy | train minutes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['balanced_accuracy']:.3f} | {r['last_epoch_accuracy']:.3f} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA_DIR", help="labelled folder (one sub-folder per class)")
    parser.add_argument("--group-pattern", default=None, metavar="REGEX",
                        help="file-name regex giving each clip's group (speaker, recording)")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=list_models(),
                        metavar="MODEL", help=f"registered models (default: {' '.join(DEFAULT_MODELS)})")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    parser.add_argument("--val-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: OUT_DIR/cache)")
    parser.add_argument("--jobs", type=int, default=None, help="feature extraction workers")
    parser.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                        help="run folders and results (default: a new temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    out = Path(args.output or tempfile.mkdtemp(prefix="soundclass-accuracy-"))
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = args.cache_dir or str(out / "cache")
    dataset = discover(args.data)
    print(f"{len(dataset)} clips, {len(dataset.classes)} classes; runs in {out}", file=sys.stderr)
    rows = []
    for model in args.models:
        print(f"training {model} ...", file=sys.stderr)
        rows.append(run_model(dataset, model, out_dir=out, epochs=args.epochs,
                              group_pattern=args.group_pattern, val_size=args.val_size, seed=args.seed,
                              cache_dir=cache_dir, n_jobs=args.jobs, progress=not args.quiet))
    same_split = all(r["val_paths"] == rows[0]["val_paths"] for r in rows)
    table = markdown_table(rows)
    note = (f"Same validation split for every model: {'yes' if same_split else 'NO'} "
            f"({rows[0]['n_val']} clips; group pattern {args.group_pattern!r}; seed {args.seed}). "
            "Train minutes include feature extraction (each model has its own feature). "
            "Accuracy, macro-F1 and balanced accuracy are those of the best epoch, which is chosen "
            "on these same validation clips (optimistic); the last-epoch accuracy involves no choice.\n")
    print(table + "\n" + note)
    (out / "results.md").write_text(table + "\n" + note, encoding="utf-8")
    summary = [{k: v for k, v in r.items() if k != "val_paths"} for r in rows]
    (out / "results.json").write_text(json.dumps({"rows": summary, "same_split": same_split,
                                                  "data": args.data, "group_pattern": args.group_pattern,
                                                  "seed": args.seed}, indent=2) + "\n", encoding="utf-8")
    return 0 if same_split else 1


if __name__ == "__main__":
    sys.exit(main())
