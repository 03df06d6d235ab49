"""Files of a dataset scan: ``files.csv``, ``bad_files.csv``, ``summary.json`` and two plots.

Every file is written atomically (:mod:`soundclass.util.atomic`), so an
interrupted run never leaves a half-written report beside complete ones.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from pathlib import Path

from soundclass.data.scan_report import UNLABELLED, ScanReport, ScanRow
from soundclass.util.atomic import write_json_atomic
from soundclass.util.csvfile import write_csv

__all__ = ["CSV_FIELDS", "write_scan_report"]

#: Columns of ``files.csv``: every :class:`ScanRow` field, in order.
CSV_FIELDS = [f.name for f in dataclasses.fields(ScanRow)]


def _csv_value(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if math.isnan(v) else ("-inf" if v == -math.inf else f"{v:.6g}")
    return str(v)


def write_scan_report(report: ScanReport, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the scan to ``out_dir`` (created if needed).

    Files: ``files.csv`` (one row per file, every :class:`ScanRow` field),
    ``bad_files.csv`` (``path,label,reason``), ``summary.json``,
    ``near_duplicates.csv`` (``path_a,path_b,score``), ``class_counts.png`` and
    ``durations.png``.

    Returns
    -------
    dict of {name: path}
        Keys ``files``, ``bad_files``, ``summary``, ``class_counts``, ``durations``,
        ``near_duplicates``.
    """
    from soundclass import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: str(out / fname) for name, fname in (
        ("files", "files.csv"), ("bad_files", "bad_files.csv"), ("summary", "summary.json"),
        ("class_counts", "class_counts.png"), ("durations", "durations.png"),
        ("near_duplicates", "near_duplicates.csv"))}
    write_csv(paths["files"], CSV_FIELDS,
              ([_csv_value(getattr(r, f)) for f in CSV_FIELDS] for r in report.rows))
    write_csv(paths["bad_files"], ["path", "label", "reason"],
              ([r.path, r.label or "", r.error] for r in report.rows if not r.ok))
    write_json_atomic(paths["summary"], report.summary(), indent=2, allow_nan=False)
    write_csv(paths["near_duplicates"], ["path_a", "path_b", "score"],
              ([a, b, f"{score:.4f}"] for a, b, score in report.near_duplicates))

    counts = report.class_counts
    fig, ax = plots.new_figure(figsize=(8.0, 1.2 + 0.32 * max(len(counts), 3)))
    bad = Counter(r.label if r.label is not None else UNLABELLED for r in report.rows if not r.ok)
    plots.plot_class_counts(counts, ax=ax, bad=bad)
    plots.save_figure(fig, paths["class_counts"])

    ok = report.ok_rows
    durations = [r.duration for r in ok]
    labels = [r.label if r.label is not None else UNLABELLED for r in ok]
    n_classes = len(set(labels))
    if 1 < n_classes <= 40:
        fig, axes = plots.new_figure(figsize=(12.0, 1.8 + 0.32 * max(n_classes, 6)), ncols=2,
                                     width_ratios=(1, 1.3))
        plots.plot_durations(durations, ax=axes[0])
        plots.plot_durations(durations, ax=axes[1], by_class=labels)
        axes[1].set_title("Durations per class (clips)")
    else:
        fig, ax = plots.new_figure(figsize=(8.0, 4.5))
        plots.plot_durations(durations, ax=ax)
    plots.save_figure(fig, paths["durations"])
    return paths


