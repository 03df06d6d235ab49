"""``soundclass train DATA_DIR``: train a model, evaluate its validation split, write the report.

The training configuration is resolved once: the model's defaults, then the
``--config`` JSON file, then the command-line flags (only those given).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from soundclass.cli._args import (
    add_data_argument,
    add_runtime_options,
    add_setting_flags,
    executor_from_args,
    setting_values,
)
from soundclass.config import config_from_dict
from soundclass.errors import ParameterError


def register(subparsers) -> None:
    from soundclass.training import settings

    parser = subparsers.add_parser(
        "train",
        help="train a model on a labelled folder, evaluate it and write an HTML report",
        description=(
            "Train a model on DATA_DIR (one sub-folder per class, or a CSV manifest), keeping a "
            "validation split (grouped when --group-pattern is given), then write into RUN_DIR: "
            "checkpoint/, history.json, split.json, config.json, metrics.json, predictions.csv, "
            "misclassified.csv, confusion.png, history.png and report.html. Files of DATA_DIR that "
            "are not audio (by extension or content) are named on stderr and in the report. Settings: the "
            "model's defaults, then --config JSON, then the flags given here (one per "
            "TrainConfig field)."
        ),
    )
    add_data_argument(parser)
    parser.add_argument("-o", "--output", default=None, metavar="RUN_DIR",
                        help="run folder (default: runs/<time>-<model>)")
    parser.add_argument("--manifest", default=None, metavar="CSV",
                        help="CSV with path,label[,group] columns (paths relative to DATA_DIR)")
    parser.add_argument("--config", default=None, metavar="JSON",
                        help="JSON file of training settings (TrainConfig fields; 'feature' overrides)")
    add_setting_flags(parser, settings())
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in RUN_DIR")
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def resolve_config(args: argparse.Namespace):
    """The :class:`~soundclass.training.TrainConfig` of ``--config`` then the flags given.

    A mapping setting (``feature``, ``model_kwargs``) given both ways is merged,
    key by key, the flags winning.
    """
    from soundclass.training import TrainConfig, settings

    data: dict = {}
    if args.config:
        try:
            data = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ParameterError(f"{args.config}: cannot read the JSON config ({exc})") from exc
        if not isinstance(data, dict):
            raise ParameterError(f"{args.config}: the JSON config must be an object of TrainConfig fields")
    for name, value in setting_values(args, settings()).items():
        if isinstance(value, dict) and isinstance(data.get(name), dict):
            value = {**data[name], **value}
        data[name] = value
    return config_from_dict(TrainConfig, data)


def _default_output(model: str) -> Path:
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{model}"


def run(args: argparse.Namespace) -> int:
    from soundclass.data.dataset import discover
    from soundclass.evaluation.evaluate import evaluate_training
    from soundclass.training import check_pretrained, train
    from soundclass.training.distributed import launched_rank

    config = resolve_config(args)
    check_pretrained(config)  # a model or feature the weights cannot fit: fail before reading data
    if args.resume and not args.output:
        raise ParameterError("--resume needs -o RUN_DIR (the folder of the interrupted run)")
    out = Path(args.output) if args.output else _default_output(config.model)
    dataset = discover(args.data, manifest=args.manifest)
    # Under torchrun every rank trains; only rank 0 reports (it holds the validation results).
    main_rank = launched_rank() == 0
    if main_rank:
        print(f"{len(dataset)} clips, {len(dataset.classes)} classes; run folder {out}")
        if config.pretrained is not None and not args.resume:
            print(f"pretrained: {config.model} backbone from {config.pretrained} (read weights-only)")
    with executor_from_args(args) as executor:
        result = train(dataset, config, out_dir=out, progress=not args.quiet, executor=executor,
                       resume=args.resume)
    if not main_rank:
        return 0
    # result.warnings were logged (stderr) when they arose, before the long training: not again
    if result.auto:
        from soundclass.training.auto import format_leaderboard

        print(format_leaderboard(result.auto))
    src = result.pretrained_from
    if src is not None:
        print(f"pretrained: loaded {src['n_loaded']} tensors from {src['path']} "
              f"(sha256 {src['sha256'][:12]}); skipped {len(src['skipped'])} (PANNs front end, "
              f"AudioSet head); re-initialised {', '.join(src['reinitialised']) or 'nothing'}")
    if not result.val_items:
        print(f"no validation split (val_size=0): no evaluation; checkpoint: {result.checkpoint_dir}")
        return 0
    title = f"soundclass train: {config.model} on {Path(args.data).name}"
    ev = evaluate_training(result, out_dir=out, title=title)
    m = ev.metrics
    print()
    if result.auto and not result.oof:
        head, split = f"{result.auto['chosen']} (chosen by --model auto)", "validation"
    elif result.oof:  # --folds: K members averaged; with --val-size 0 the out-of-fold clips are the evaluation
        head, split = f"ensemble of {result.oof['n_folds']} fold models", (
            "out-of-fold" if result.oof.get("is_validation") else "validation")
    else:
        head, split = f"best epoch {result.best_epoch + 1} of {len(result.history)}", "validation"
    print(f"{head}: {split} ({m['n']} clips) accuracy {m['accuracy']:.3f}, "
          f"macro-F1 {m['macro_f1']:.3f}, balanced accuracy {m['balanced_accuracy']:.3f}, "
          f"log loss {m['log_loss']:.3f}")
    if m["n_failed"]:
        print(f"{m['n_failed']} clip(s) could not be decoded and were skipped (see the report)")
    print(f"report:     {ev.files['report']}")
    print(f"checkpoint: {result.checkpoint_dir}")
    print(f"metrics:    {ev.files['metrics']}  misclassified: {ev.files['misclassified']}")
    return 0
