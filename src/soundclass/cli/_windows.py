"""``soundclass predict --windows SECONDS[:HOP]``: long recordings scored window by window.

Kept out of ``cli/predict.py`` (which only adds the option and calls
:func:`run_windows`); the work is :func:`soundclass.inference.windows.predict_windows`.
"""

from __future__ import annotations

import argparse
import sys

WINDOWS_HELP = (
    "score each file window by window (streaming; memory bounded by a window): SECONDS long, "
    "every HOP seconds (default HOP = SECONDS; SECONDS 'auto': the model's training window). "
    "Writes one name,start,end,label,p row per window to CSV and the merged runs of one label to "
    "<CSV stem>.segments.csv"
)


def run_windows(args: argparse.Namespace, paths: list[str]) -> int:
    """Write the window CSV and the segments CSV of ``paths``; print a summary and the failures."""
    from soundclass.checkpoint.format import load_checkpoint, resolve_checkpoint
    from soundclass.inference.windows import default_window_seconds, parse_windows, predict_windows

    ckpt = load_checkpoint(resolve_checkpoint(args.model))
    window, hop = parse_windows(args.windows)
    window = default_window_seconds(ckpt) if window is None else window
    res = predict_windows(ckpt, paths, window_seconds=window, hop_seconds=hop, out_csv=args.output,
                          tta=args.tta, batch_size=args.batch_size, progress=not args.quiet)
    for path, reason in res.failures.items():
        print(f"warning: {path}: {reason}", file=sys.stderr)
    shown = ", ".join(f"{lab} {sec:.1f} s" for lab, sec in
                      sorted(res.label_seconds.items(), key=lambda kv: -kv[1])[:5])
    print(f"{res.n_files} file(s), {len(res.failures)} failed; {res.n_windows} window(s) of {window:g} s "
          f"(hop {hop if hop is not None else window:g} s), {res.n_segments} segment(s): {shown}")
    print(f"windows:  {res.windows_csv}")
    print(f"segments: {res.segments_csv}")
    return 0
