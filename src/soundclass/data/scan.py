"""Dataset scan: what is really in a folder of clips before anything is trained.

:func:`scan` reads every file of a dataset (folder-per-class tree, CSV
manifest, or a flat folder of unlabelled clips) in a process pool and records
its header, level and problems; one bad file becomes a row with a reason and
never stops the scan.  :class:`ScanReport` summarises the rows (class counts
and durations, sample rates, channels, encodings, bad files, imbalance,
duplicate contents across classes); :func:`write_scan_report` writes them as
CSV, JSON and PNG, :func:`format_summary` as text for a terminal.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from soundclass import audio
from soundclass.data.dataset import Dataset, Item, discover, list_audio
from soundclass.errors import AudioDecodeError, DatasetError, ParameterError
from soundclass.util.executors import default_n_jobs, make_executor

__all__ = [
    "FLAGS",
    "ScanRow",
    "ScanReport",
    "scan",
    "scan_file",
    "write_scan_report",
    "format_summary",
]

#: Boolean problems recorded per file, in report order.
FLAGS = ("silent", "clipped", "very_short", "nonfinite", "multichannel")
UNLABELLED = "(unlabelled)"
_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_CLIP_LEVELS = {"PCM_S8": 0.99, "PCM_U8": 0.99}
_HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class ScanRow:
    """What one file is and what is wrong with it.

    Attributes
    ----------
    path, label, name : str
        ``label`` is ``None`` for unlabelled clips.
    format, subtype : str
        Container and encoding from the header (``''`` if unreadable).
    sr, channels, frames : int
        Native sample rate, channels and samples per channel (0 if unknown).
    duration : float
        Seconds (``nan`` if the header is unreadable).
    peak_dbfs, rms_dbfs : float
        Sample peak and RMS level over all channels in dB re full scale
        (``-inf`` for digital silence, ``nan`` if undecodable).
    silent : bool
        RMS at or below -80 dBFS (:func:`soundclass.audio.is_silent`).
    clipped : bool
        Float samples beyond full scale, or a run of at least
        ``clip_run`` samples at ``|y| >= clip_level``.
    very_short : bool
        Fewer than ``n_fft`` samples at the native rate: not even one full
        analysis window.
    nonfinite : bool
        The file holds NaN or infinite samples.
    multichannel : bool
        More than one channel.
    size_bytes : int
    sha1 : str
        Hash of the file's bytes (``''`` if unreadable); equal hashes are
        duplicate clips.
    error : str or None
        Why the file cannot be used; ``None`` for usable files.
    """

    path: str
    label: str | None
    name: str
    format: str = ""
    subtype: str = ""
    sr: int = 0
    channels: int = 0
    frames: int = 0
    duration: float = math.nan
    peak_dbfs: float = math.nan
    rms_dbfs: float = math.nan
    silent: bool = False
    clipped: bool = False
    very_short: bool = False
    nonfinite: bool = False
    multichannel: bool = False
    size_bytes: int = 0
    sha1: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file decodes to a valid signal."""
        return self.error is None

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the flags that are set."""
        return tuple(f for f in FLAGS if getattr(self, f))


def _sha1(path: str) -> tuple[int, str]:
    h = hashlib.sha1()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            h.update(block)
            size += len(block)
    return size, h.hexdigest()


def _db(x: float) -> float:
    return 20.0 * math.log10(x) if x > 0 else -math.inf


def _longest_run(mask: np.ndarray) -> int:
    """Longest run of True along the last axis of a boolean (channels, n) array."""
    best = 0
    for row in mask.reshape(-1, mask.shape[-1]):
        if not row.any():
            continue
        padded = np.concatenate([[False], row, [False]])
        edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
        best = max(best, int(np.max(edges[1::2] - edges[0::2])))
    return best


def _count_nonfinite(path: str) -> int:
    """Non-finite samples of a float-encoded file (read raw, without checks)."""
    import soundfile as sf

    count = 0
    with sf.SoundFile(path) as desc:
        for block in desc.blocks(blocksize=1 << 16, dtype="float64", always_2d=True):
            count += int(np.count_nonzero(~np.isfinite(block)))
    return count


def scan_file(
    path: str | os.PathLike,
    *,
    label: str | None = None,
    n_fft: int = 2048,
    clip_level: float | None = None,
    clip_run: int = 3,
) -> ScanRow:
    """Scan one file; never raises for a bad file (the reason goes into ``error``).

    Parameters
    ----------
    path : str or os.PathLike
    label : str, optional
    n_fft : int
        Files with fewer native samples are flagged ``very_short``.
    clip_level, clip_run
        A run of ``clip_run`` samples at ``|y| >= clip_level`` counts as
        clipping; the default level is 0.999 of full scale (0.99 for 8-bit
        files, whose largest positive sample is 127/128).

    Returns
    -------
    ScanRow
    """
    path = os.fspath(path)
    fields_: dict = {"path": path, "label": label, "name": os.path.basename(path)}
    try:
        fields_["size_bytes"], fields_["sha1"] = _sha1(path)
    except OSError as exc:
        return ScanRow(**fields_, error=f"cannot read file ({exc.strerror or exc})")
    try:
        head = audio.info(path)
        fields_.update(format=head.format, subtype=head.subtype, sr=head.sr,
                       channels=head.channels, frames=head.frames, duration=head.duration,
                       multichannel=head.channels > 1, very_short=head.frames < n_fft)
        y, _ = audio.load(path, sr=None, mono=False)
    except AudioDecodeError as exc:
        error = exc.reason
    except Exception as exc:  # one odd file must never stop a scan
        error = f"unexpected {type(exc).__name__}: {exc}"
    else:
        y2 = y.reshape(-1, y.shape[-1]).astype(np.float64, copy=False)
        peak = float(np.max(np.abs(y2))) if y2.size else 0.0
        rms = float(np.sqrt(np.mean(np.square(y2)))) if y2.size else 0.0
        over = peak > 1.0 and head.subtype in _FLOAT_SUBTYPES
        level = clip_level if clip_level is not None else _CLIP_LEVELS.get(head.subtype, 0.999)
        clipped = over or _longest_run(np.abs(y2) >= level) >= clip_run
        return ScanRow(**fields_, peak_dbfs=_db(peak), rms_dbfs=_db(rms),
                       silent=audio.is_silent(y), clipped=bool(clipped))
    nonfinite = False
    if fields_.get("subtype") in _FLOAT_SUBTYPES:
        try:
            nonfinite = _count_nonfinite(path) > 0
        except Exception:  # the reason above already says why it is unusable
            nonfinite = False
    return ScanRow(**fields_, nonfinite=nonfinite, error=error)


def _scan_chunk(jobs: Sequence[tuple[str, str | None]], options: dict) -> list[ScanRow]:
    return [scan_file(path, label=label, **options) for path, label in jobs]


@dataclass(frozen=True)
class ScanReport:
    """The rows of a scan and their summary.

    Attributes
    ----------
    rows : tuple of ScanRow
        One per file, sorted by path.
    root : str
        What was scanned.
    classes : tuple of str
        Sorted class names (empty for unlabelled clips).
    seconds : float
        Wall-clock time of the scan.
    n_fft : int
        The ``very_short`` threshold used.
    """

    rows: tuple[ScanRow, ...]
    root: str = ""
    classes: tuple[str, ...] = ()
    seconds: float = 0.0
    n_fft: int = 2048

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ok_rows(self) -> list[ScanRow]:
        return [r for r in self.rows if r.ok]

    @property
    def bad_files(self) -> list[tuple[str, str]]:
        """``(path, reason)`` of every unusable file."""
        return [(r.path, r.error) for r in self.rows if not r.ok]

    @property
    def class_counts(self) -> dict[str, int]:
        """Files per class (every listed file, readable or not), in class order."""
        counts = Counter(r.label if r.label is not None else UNLABELLED for r in self.rows)
        order = list(self.classes) + sorted(set(counts) - set(self.classes))
        return {c: counts[c] for c in order}

    @property
    def imbalance_ratio(self) -> float:
        """Largest class count / smallest (``inf`` if a class has no file, 1 for one class)."""
        counts = list(self.class_counts.values())
        if not counts:
            return math.nan
        return math.inf if min(counts) == 0 else max(counts) / min(counts)

    @property
    def duplicates(self) -> list[dict]:
        """Groups of files with identical bytes, cross-class groups first.

        Each group: ``{"sha1", "paths", "labels", "cross_class"}``; a group whose
        files carry different labels is a train/test leakage and label-noise hint.
        """
        by_hash: dict[str, list[ScanRow]] = defaultdict(list)
        for r in self.rows:
            if r.sha1 and r.size_bytes > 0:
                by_hash[r.sha1].append(r)
        groups = []
        for digest, rows in by_hash.items():
            if len(rows) < 2:
                continue
            labels = sorted({str(r.label) for r in rows})
            groups.append({"sha1": digest, "paths": [r.path for r in rows],
                           "labels": labels, "cross_class": len(labels) > 1})
        groups.sort(key=lambda g: (not g["cross_class"], g["paths"][0]))
        return groups

    def summary(self) -> dict:
        """A JSON-ready summary of the scan."""
        ok = self.ok_rows
        per_class: dict[str, dict] = {}
        for c, n in self.class_counts.items():
            rows = [r for r in self.rows if (r.label if r.label is not None else UNLABELLED) == c]
            durs = [r.duration for r in rows if r.ok]
            per_class[c] = {
                "files": n,
                "ok": len(durs),
                "bad": n - len(durs),
                "total_duration": round(float(sum(durs)), 3),
                "mean_duration": round(float(np.mean(durs)), 4) if durs else None,
            }
        durations = np.array([r.duration for r in ok], dtype=np.float64)
        flags = {f: sum(1 for r in self.rows if getattr(r, f)) for f in FLAGS}
        dups = self.duplicates
        ratio = self.imbalance_ratio
        return {
            "root": self.root,
            "files": len(self.rows),
            "ok": len(ok),
            "bad": len(self.rows) - len(ok),
            "classes": per_class,
            "imbalance_ratio": None if not math.isfinite(ratio) else round(ratio, 4),
            "duration": {
                "total": round(float(durations.sum()), 3),
                "mean": round(float(durations.mean()), 4) if durations.size else None,
                "min": round(float(durations.min()), 4) if durations.size else None,
                "median": round(float(np.median(durations)), 4) if durations.size else None,
                "max": round(float(durations.max()), 4) if durations.size else None,
            },
            "sample_rates": _counts(r.sr for r in self.rows if r.sr),
            "channels": _counts(r.channels for r in self.rows if r.channels),
            "encodings": _counts(f"{r.format}/{r.subtype}" for r in self.rows if r.format),
            "flags": flags,
            "n_fft": self.n_fft,
            "bad_files": [{"path": p, "reason": why} for p, why in self.bad_files],
            "duplicate_groups": len(dups),
            "duplicate_groups_cross_class": sum(g["cross_class"] for g in dups),
            "duplicates": dups,
            "seconds": round(self.seconds, 3),
        }


def _counts(values: Iterable) -> dict[str, int]:
    counts = Counter(values)
    return {str(k): v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


def _dataset(root: str | os.PathLike, manifest: str | os.PathLike | None) -> Dataset:
    """Folder-per-class tree or manifest; a flat folder of clips is scanned unlabelled."""
    root_path = Path(root)
    if manifest is None and not root_path.exists():
        raise DatasetError(f"{root_path}: no such file or directory")
    try:
        return discover(root_path, manifest=manifest)
    except DatasetError:
        if manifest is not None or not root_path.is_dir():
            raise
        paths = list_audio(root_path)
        if not paths:
            raise
        return Dataset(tuple(Item(p, None) for p in paths), (), str(root_path))


def _chunks(jobs: list, n_workers: int) -> list[list]:
    size = max(1, min(64, math.ceil(len(jobs) / (n_workers * 8))))
    return [jobs[i : i + size] for i in range(0, len(jobs), size)]


def scan(
    root: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    executor: cf.Executor | None = None,
    n_fft: int = 2048,
) -> ScanReport:
    """Scan every clip of a dataset.

    Parameters
    ----------
    root : path
        A folder with one sub-folder per class, a CSV manifest, or a flat
        folder of unlabelled clips.
    manifest : path, optional
        CSV manifest (see :func:`soundclass.data.dataset.discover`).
    n_jobs : int, optional
        Worker processes (default: all cores); ``1`` scans in this process.
    progress : bool
        Show a progress bar on stderr.
    executor : concurrent.futures.Executor, optional
        Run the chunks there instead (e.g. a dask client's executor);
        ``n_jobs`` then only sets the chunk size.
    n_fft : int
        Threshold of the ``very_short`` flag (native samples).

    Returns
    -------
    ScanReport

    Raises
    ------
    DatasetError
        ``root`` does not exist or holds no audio files.
    ParameterError
        Invalid ``n_jobs`` or ``n_fft``.
    """
    if isinstance(n_fft, bool) or not isinstance(n_fft, int) or n_fft < 1:
        raise ParameterError(f"n_fft={n_fft!r} must be a positive integer")
    start = time.perf_counter()
    workers = default_n_jobs(n_jobs)  # validates n_jobs
    dataset = _dataset(root, manifest)
    jobs = [(it.path, it.label) for it in dataset.items]
    options = {"n_fft": n_fft}
    chunks = _chunks(jobs, workers)
    rows: list[ScanRow] = []
    bar = _progress(len(jobs), progress)
    try:
        if executor is None and (workers == 1 or len(chunks) == 1):
            for chunk in chunks:
                rows.extend(_scan_chunk(chunk, options))
                bar.update(len(chunk))
        else:
            own = executor is None
            pool = make_executor("process", n_jobs=min(workers, len(chunks))) if own else executor
            broken: list[tuple[str, str | None]] = []
            try:
                futures = {pool.submit(_scan_chunk, chunk, options): chunk for chunk in chunks}
                for fut in cf.as_completed(futures):
                    chunk = futures[fut]
                    try:
                        rows.extend(fut.result())
                        bar.update(len(chunk))
                    except BrokenProcessPool:
                        broken.extend(chunk)  # retried below, one file per task
                    except Exception as exc:  # a failed task loses its chunk, not the scan
                        why = f"worker failed: {type(exc).__name__}: {exc}"
                        rows.extend(ScanRow(p, lab, os.path.basename(p), error=why)
                                    for p, lab in chunk)
                        bar.update(len(chunk))
            finally:
                if own:
                    pool.shutdown(wait=True, cancel_futures=True)
            if broken:
                rows.extend(_isolate(broken, options, own=own, bar=bar))
    finally:
        bar.close()
    rows.sort(key=lambda r: r.path)
    return ScanReport(tuple(rows), root=str(manifest or root), classes=dataset.classes,
                      seconds=time.perf_counter() - start, n_fft=n_fft)


_CRASHED = "the worker process died while decoding this file (decoder crash or out of memory)"
_POOL_BROKE = ("not scanned: the executor's process pool broke while this file's chunk was "
               "being scanned (scan again with n_jobs=1 to find the file that kills it)")


def _isolate(jobs: list[tuple[str, str | None]], options: dict, *, own: bool, bar) -> list[ScanRow]:
    """Scan files of chunks whose process pool broke, one file per task in a fresh
    one-worker pool, so that only the file that kills a worker is marked bad."""
    rows: list[ScanRow] = []
    pending = list(jobs)
    while pending:
        if not own:  # a caller's executor cannot be recreated: report, do not retry
            rows.extend(ScanRow(p, lab, os.path.basename(p), error=_POOL_BROKE)
                        for p, lab in pending)
            bar.update(len(pending))
            break
        pool = make_executor("process", n_jobs=1)
        try:
            while pending:
                path, label = pending[0]
                try:
                    rows.extend(pool.submit(_scan_chunk, [pending[0]], options).result())
                except BrokenProcessPool:
                    rows.append(ScanRow(path, label, os.path.basename(path), error=_CRASHED))
                    pending.pop(0)
                    bar.update(1)
                    break  # this pool is dead: continue with a new one
                pending.pop(0)
                bar.update(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    return rows


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc="scan", file=sys.stderr, dynamic_ncols=True)


# ----------------------------------------------------------------------------- output

_CSV_FIELDS = [f.name for f in dataclasses.fields(ScanRow)]


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
    ``class_counts.png`` and ``durations.png``.

    Returns
    -------
    dict of {name: path}
        Keys ``files``, ``bad_files``, ``summary``, ``class_counts``, ``durations``.
    """
    from soundclass import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: str(out / fname) for name, fname in (
        ("files", "files.csv"), ("bad_files", "bad_files.csv"), ("summary", "summary.json"),
        ("class_counts", "class_counts.png"), ("durations", "durations.png"))}
    with open(paths["files"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(_CSV_FIELDS)
        for r in report.rows:
            writer.writerow([_csv_value(getattr(r, f)) for f in _CSV_FIELDS])
    with open(paths["bad_files"], "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "reason"])
        for r in report.rows:
            if not r.ok:
                writer.writerow([r.path, r.label or "", r.error])
    with open(paths["summary"], "w", encoding="utf-8") as fh:
        json.dump(report.summary(), fh, indent=2, allow_nan=False)
        fh.write("\n")

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


def _fmt_seconds(s: float) -> str:
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {s % 60:04.1f} s"
    return f"{s:.2f} s"


def _fmt_counts(d: dict[str, int], unit: str = "") -> str:
    return ", ".join(f"{k}{unit} ({v})" for k, v in d.items()) or "-"


def format_summary(report: ScanReport, *, max_listed: int = 10) -> str:
    """The scan summary as plain text for a terminal.

    Parameters
    ----------
    report : ScanReport
    max_listed : int
        Bad files and duplicate groups listed at most (all are in the files).

    Returns
    -------
    str
    """
    s = report.summary()
    lines = [
        f"Scanned {s['files']} files in {len(s['classes'])} classes from {s['root']} "
        f"({s['seconds']:.1f} s): {s['ok']} readable, {s['bad']} bad",
    ]
    d = s["duration"]
    if d["mean"] is not None:
        lines.append(f"Duration: total {_fmt_seconds(d['total'])}, mean {d['mean']:.2f} s, "
                     f"median {d['median']:.2f} s, range {d['min']:.2f}-{d['max']:.2f} s")
    lines.append(f"Sample rates: {_fmt_counts(s['sample_rates'], ' Hz')}")
    lines.append(f"Channels: {_fmt_counts(s['channels'])}")
    lines.append(f"Encodings: {_fmt_counts(s['encodings'])}")
    flag_text = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["flags"].items())
    lines.append(f"Flags: {flag_text} (very short = fewer than n_fft={s['n_fft']} samples)")
    ratio = report.imbalance_ratio
    if math.isnan(ratio):
        ratio_text = "n/a"
    else:
        ratio_text = "inf (an empty class)" if math.isinf(ratio) else f"{ratio:.1f}:1"
    lines.append(f"Classes (imbalance {ratio_text}):")
    width = max(len(c) for c in s["classes"]) if s["classes"] else 5
    for c, info in s["classes"].items():
        mean = "-" if info["mean_duration"] is None else f"{info['mean_duration']:.2f} s"
        bad = f"  ({info['bad']} bad)" if info["bad"] else ""
        lines.append(f"  {c:<{width}}  {info['files']:>6} files  total "
                     f"{_fmt_seconds(info['total_duration']):>14}  mean {mean:>8}{bad}")
    if s["bad_files"]:
        lines.append(f"Bad files ({len(s['bad_files'])}):")
        for b in s["bad_files"][:max_listed]:
            lines.append(f"  {b['path']}: {b['reason']}")
        if len(s["bad_files"]) > max_listed:
            lines.append(f"  ... and {len(s['bad_files']) - max_listed} more (see bad_files.csv)")
    else:
        lines.append("Bad files: none")
    dups = s["duplicates"]
    if dups:
        cross = s["duplicate_groups_cross_class"]
        warn = f", {cross} ACROSS CLASSES (label noise / leakage)" if cross else ""
        lines.append(f"Duplicate contents: {len(dups)} group(s){warn}:")
        for g in dups[:max_listed]:
            tag = " [cross-class: " + ", ".join(g["labels"]) + "]" if g["cross_class"] else ""
            lines.append(f"  {len(g['paths'])} x {g['sha1'][:10]}{tag}: " + ", ".join(g["paths"][:4])
                         + (" ..." if len(g["paths"]) > 4 else ""))
        if len(dups) > max_listed:
            lines.append(f"  ... and {len(dups) - max_listed} more (see summary.json)")
    else:
        lines.append("Duplicate contents: none")
    return "\n".join(lines)
