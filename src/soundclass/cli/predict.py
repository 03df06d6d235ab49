"""``soundclass predict MODEL TEST_DIR_OR_FILES... -o submit.csv``: a submission CSV."""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from soundclass.cli._args import (
    add_batch_size_option,
    add_model_argument,
    add_runtime_options,
    add_tta_option,
    executor_from_args,
    positive_int,
)
from soundclass.cli._unknown import add_unknown_options, apply_unknown_options
from soundclass.cli._windows import WINDOWS_HELP, run_windows
from soundclass.errors import DatasetError

_POLICIES = {"most-frequent": "most_frequent", "skip": "skip", "error": "error"}
_BACKENDS = ("auto", "torch", "onnx")  # soundclass.inference.backends.BACKENDS (not imported: fast --help)


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--backend auto|torch|onnx`` and make ``--batch-size`` default to the predictor's."""
    parser.add_argument(
        "--backend", choices=_BACKENDS, default="auto",
        help="what runs the model: onnxruntime (onnx), torch, or auto = onnxruntime when it is "
             "installed and the model exports, else torch (default: %(default)s)",
    )
    parser.set_defaults(batch_size=8)  # soundclass.inference.predict.DEFAULT_BATCH_SIZE


def collect_paths(inputs: list[str]) -> list[str]:
    """Audio files of folders (recursively, sorted) and files, in argument order, once each.

    The files of the folders that are not audio are named on stderr
    (:func:`soundclass.data.dataset.skipped_note`).
    """
    from soundclass.data.dataset import list_folder, skipped_note

    seen: dict[str, None] = {}
    skipped: list[str] = []
    for item in inputs:
        listing = list_folder(item)
        for p in listing.paths:
            seen.setdefault(p, None)
        skipped.extend(listing.skipped)
    note = skipped_note(skipped, root=inputs[0] if len(inputs) == 1 else None)
    if not seen:
        raise DatasetError(f"no audio files in {', '.join(inputs)}" + (f"; {note}" if note else ""))
    if note:
        print(f"warning: {note}", file=sys.stderr)
    return list(seen)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help="predict clips with a trained model and write a submission CSV (name,label)",
        description=(
            "Predict every audio file of the given folders (recursively) and files and write a "
            "submission CSV: header 'name,label', one row per file (file name only), in input "
            "order. Files of the folders that are not audio (by extension or content) are named "
            "on stderr. Files that cannot be decoded are reported on stderr and listed in "
            "<CSV stem>.failed.csv (path,reason); by default they still get a row with the most frequently "
            "predicted class, so the submission lists every file."
        ),
    )
    add_model_argument(parser)
    parser.add_argument("inputs", nargs="+", metavar="TEST_DIR_OR_FILES", help="folders and/or audio files")
    parser.add_argument("-o", "--output", required=True, metavar="CSV", help="submission CSV to write")
    parser.add_argument("--top-k", type=positive_int, default=1, metavar="K",
                        help="also write the next K-1 most probable classes (label_2..label_K)")
    parser.add_argument("--proba", action="store_true", help="add one proba_<class> column per class")
    add_tta_option(parser)
    parser.add_argument("--on-failure", choices=sorted(_POLICIES), default="most-frequent",
                        help="what to write for undecodable files (default: %(default)s)")
    parser.add_argument("--excel-safe", action="store_true",
                        help="prefix ' to cells starting with = + - @ (or tab/CR) so spreadsheets "
                             "show them as text instead of running them as formulas")
    add_batch_size_option(parser)
    add_backend_option(parser)
    parser.add_argument("--windows", default=None, metavar="SECONDS[:HOP]", help=WINDOWS_HELP)
    add_runtime_options(parser)
    add_unknown_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from soundclass.inference.backends import make_backend
    from soundclass.inference.predict import predict_paths
    from soundclass.inference.submission import write_submission

    if getattr(args, "windows", None):  # long recordings: one row per window, merged segments

        return run_windows(args, collect_paths(args.inputs))
    backend = make_backend(args.model, args.backend)
    ckpt = backend.checkpoint
    paths = collect_paths(args.inputs)
    with executor_from_args(args) as executor:
        preds = predict_paths(
            backend, paths, tta=args.tta, n_jobs=args.jobs, cache_dir=args.cache_dir,
            progress=not args.quiet, batch_size=args.batch_size, executor=executor,
        )
    preds = apply_unknown_options(args, ckpt, preds)  # label 'unknown' below the threshold
    out = write_submission(
        preds, args.output, top_k=args.top_k, with_proba=args.proba,
        failed=_POLICIES[args.on_failure], excel_safe=args.excel_safe,
    )
    counts = Counter(preds.classes[i] for i in preds.predicted if i >= 0)
    common = ", ".join(f"{c} {n}" for c, n in counts.most_common(5))
    print(f"{len(paths)} file(s), {len(preds.failures)} failed; predicted: {common}")
    print(f"submission: {out}")
    return 0
