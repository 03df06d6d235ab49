"""``soundclass evaluate MODEL DATA_DIR``: metrics and an HTML report on labelled clips."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from soundclass.cli._args import (
    add_batch_size_option,
    add_data_argument,
    add_model_argument,
    add_runtime_options,
    add_tta_option,
    executor_from_args,
)
from soundclass.cli.predict import add_backend_option
from soundclass.evaluation.metrics import format_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate a trained model on a labelled folder: metrics, confusion matrix, HTML report",
        description=(
            "Evaluate a checkpoint on a labelled dataset (one sub-folder per class, or a CSV "
            "manifest) and write metrics.json, predictions.csv, misclassified.csv, confusion.png, "
            "history.png (when the model comes from a training run) and report.html. Files of "
            "DATA_DIR that are not audio (by extension or content) are named on stderr and in the report."
        ),
    )
    add_model_argument(parser)
    add_data_argument(parser)
    parser.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                        help="where to write the results (default: MODEL's run folder/eval-<DATA_DIR name>)")
    parser.add_argument("--manifest", default=None, metavar="CSV",
                        help="CSV with path,label columns (paths relative to DATA_DIR)")
    add_tta_option(parser)
    add_batch_size_option(parser)
    add_backend_option(parser)
    add_runtime_options(parser)
    parser.set_defaults(func=run)


def _default_output(model: str, data: str) -> Path:
    from soundclass.checkpoint.format import resolve_checkpoint

    run_dir = resolve_checkpoint(model).parent
    name = Path(os.path.normpath(data)).stem or "data"
    return run_dir / f"eval-{name}"


def run(args: argparse.Namespace) -> int:
    from soundclass.data.dataset import discover, skipped_note
    from soundclass.evaluation.evaluate import evaluate_checkpoint
    from soundclass.inference.predict import use_backend

    dataset = discover(args.data, manifest=args.manifest)
    note = skipped_note(dataset.skipped, root=dataset.root)
    if note:  # also in the report's warnings
        print(f"warning: {note}", file=sys.stderr)
    out = Path(args.output) if args.output else _default_output(args.model, args.data)
    with executor_from_args(args) as executor, use_backend(args.backend):
        ev = evaluate_checkpoint(
            args.model, dataset, out_dir=out, tta=args.tta, n_jobs=args.jobs,
            cache_dir=args.cache_dir, progress=not args.quiet, executor=executor,
            batch_size=args.batch_size,
        )
    print(format_report(ev.metrics), end="")
    if ev.metrics["n_failed"]:
        print(f"{ev.metrics['n_failed']} clip(s) skipped (listed in metrics.json and the report)")
    print(f"report: {ev.files['report']}")
    print(f"metrics: {ev.files['metrics']}  misclassified: {ev.files['misclassified']}")
    return 0
