"""``soundclass scan``: what is in a dataset folder, before training on it."""

from __future__ import annotations

import argparse
from pathlib import Path

from soundclass.cli._args import add_executor_option, add_jobs_option, executor_from_args, fraction
from soundclass.data.fingerprint import DEFAULT_THRESHOLD
from soundclass.data.scan import format_summary, scan, write_scan_report


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="check every clip of a dataset: counts, durations, formats, bad files, duplicates",
        description=(
            "Read every audio file of a dataset (one sub-folder per class, a CSV manifest, or a "
            "flat folder of unlabelled clips) and report per class counts and durations, sample "
            "rates, channels, encodings, flags (silent, clipped, very short, NaN/Inf, "
            "multichannel), files that cannot be decoded (with the reason), the class imbalance "
            "and files with identical content (duplicates across classes hint at label noise "
            "and train/test leakage). Files that are not audio (by extension or content) are not read; the summary names them. Prints a summary and writes files.csv, bad_files.csv, "
            "summary.json, near_duplicates.csv, class_counts.png and durations.png. Bad files are reported, not "
            "fatal: the exit code is 0 unless the folder is missing or holds no audio."
        ),
    )
    parser.add_argument("root", metavar="DIR",
                        help="dataset folder (one sub-folder per class) or a CSV manifest")
    parser.add_argument("--manifest", default=None, metavar="CSV",
                        help="CSV with path and label columns; relative paths are resolved "
                             "against DIR")
    parser.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                        help="report folder (default: <DIR name>_scan in the current folder)")
    add_jobs_option(parser, help_text="parallel worker processes (default: all cores)")
    add_executor_option(parser)
    parser.add_argument("--near-duplicates", type=fraction, default=DEFAULT_THRESHOLD, metavar="SCORE",
                        help="also list near duplicates (re-encoded, trimmed, resampled or gain-changed "
                             "copies) at this fingerprint similarity in near_duplicates.csv "
                             "(default %(default)s)")
    parser.add_argument("--no-near-duplicates", dest="near_duplicates", action="store_const", const=None,
                        help="skip the near-duplicate search (the slowest part on thousands of clips)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    with executor_from_args(args) as executor:
        report = scan(args.root, manifest=args.manifest, n_jobs=args.jobs,
                      progress=not args.no_progress, executor=executor,
                      near_duplicates=args.near_duplicates)
    out = args.output or f"{Path(args.root).resolve().stem or 'dataset'}_scan"
    paths = write_scan_report(report, out)
    print(format_summary(report))
    print(f"report: {Path(out)}/ ({', '.join(Path(p).name for p in paths.values())})")
    return 0
