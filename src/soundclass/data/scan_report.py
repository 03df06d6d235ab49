"""The result of a dataset scan: one row per file, its summary, and its text.

:class:`ScanRow` is what one file is and what is wrong with it;
:class:`ScanReport` summarises the rows (class counts and durations, sample
rates, channels, encodings, bad files, imbalance, duplicate contents across
classes); :func:`format_summary` renders the summary for a terminal.  The rows
are made by :func:`soundclass.data.scan.scan`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from soundclass.data.dataset import skipped_note
from soundclass.util.failures import Failure

__all__ = ["FLAGS", "UNLABELLED", "ScanReport", "ScanRow", "format_summary"]

#: Boolean problems recorded per file, in report order.
FLAGS = ("silent", "clipped", "very_short", "nonfinite", "multichannel", "truncated")
#: The class name shown for clips without a label.
UNLABELLED = "(unlabelled)"


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
    truncated : bool
        Cut or damaged: the header promises more than the file holds; the
        part present decodes and is used (``warnings`` says how much).
    warnings : str
        Non-fatal decoder notes, ``'; '``-separated (:attr:`soundclass.audio.Decoded.warnings`).
    size_bytes : int
    sha256 : str
        SHA-256 of the file's bytes (:func:`soundclass.util.hashing.file_digest`;
        ``''`` if unreadable); equal hashes are duplicate clips.  The
        ``files.csv`` column and the duplicate groups of ``summary.json`` use
        the same name, ``sha256``.
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
    truncated: bool = False
    warnings: str = ""
    size_bytes: int = 0
    sha256: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the file decodes to a valid signal."""
        return self.error is None

    @property
    def flags(self) -> tuple[str, ...]:
        """Names of the flags that are set."""
        return tuple(f for f in FLAGS if getattr(self, f))


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
    near_duplicates : tuple of (path_a, path_b, score)
        Different files of one recording (re-encoded, trimmed, resampled,
        gain-changed), found by fingerprint similarity >= ``near_duplicate_threshold``
        (0: not looked for).
    skipped : tuple of str
        Files below ``root`` that are not audio (by name or content), not scanned.
    """

    rows: tuple[ScanRow, ...]
    root: str = ""
    classes: tuple[str, ...] = ()
    seconds: float = 0.0
    n_fft: int = 2048
    near_duplicates: tuple[tuple[str, str, float], ...] = ()
    near_duplicate_threshold: float = 0.0
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def ok_rows(self) -> list[ScanRow]:
        return [r for r in self.rows if r.ok]

    @property
    def bad_files(self) -> list[Failure]:
        """A :class:`~soundclass.util.failures.Failure` ``(path, reason)`` per unusable file."""
        return [Failure(r.path, r.error) for r in self.rows if not r.ok]

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

        Each group: ``{"sha256", "paths", "labels", "cross_class"}``; a group whose
        files carry different labels is a train/test leakage and label-noise hint.
        """
        by_hash: dict[str, list[ScanRow]] = defaultdict(list)
        for r in self.rows:
            if r.sha256 and r.size_bytes > 0:
                by_hash[r.sha256].append(r)
        groups = []
        for digest, rows in by_hash.items():
            if len(rows) < 2:
                continue
            labels = sorted({str(r.label) for r in rows})
            groups.append({"sha256": digest, "paths": [r.path for r in rows],
                           "labels": labels, "cross_class": len(labels) > 1})
        groups.sort(key=lambda g: (not g["cross_class"], g["paths"][0]))
        return groups

    def _near_cross_class(self) -> int:
        label = {r.path: r.label for r in self.rows}
        return sum(1 for a, b, _ in self.near_duplicates if label.get(a) != label.get(b))

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
            "skipped": len(self.skipped),
            "skipped_files": list(self.skipped),
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
            "near_duplicate_threshold": self.near_duplicate_threshold or None,
            "near_duplicate_pairs": len(self.near_duplicates),
            "near_duplicates_cross_class": self._near_cross_class(),
            "seconds": round(self.seconds, 3),
        }


def _counts(values: Iterable) -> dict[str, int]:
    counts = Counter(values)
    return {str(k): v for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))}


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
        Skipped files, bad files and duplicate groups listed at most (all are in the files).

    Returns
    -------
    str
    """
    s = report.summary()
    lines = [
        f"Scanned {s['files']} files in {len(s['classes'])} classes from {s['root']} "
        f"({s['seconds']:.1f} s): {s['ok']} readable, {s['bad']} bad",
    ]
    note = skipped_note(report.skipped, root=report.root, max_listed=max_listed)
    if note:
        lines.append(note + (" (all in summary.json)" if len(report.skipped) > max_listed else ""))
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
            lines.append(f"  {len(g['paths'])} x {g['sha256'][:10]}{tag}: " + ", ".join(g["paths"][:4])
                         + (" ..." if len(g["paths"]) > 4 else ""))
        if len(dups) > max_listed:
            lines.append(f"  ... and {len(dups) - max_listed} more (see summary.json)")
    else:
        lines.append("Duplicate contents: none")
    if s["near_duplicate_threshold"]:
        near = report.near_duplicates
        cross = s["near_duplicates_cross_class"]
        warn = f", {cross} ACROSS CLASSES" if cross else ""
        lines.append(f"Near duplicates (fingerprint similarity >= {s['near_duplicate_threshold']:g}): "
                     f"{len(near)} pair(s){warn}" + (":" if near else ""))
        for a, b, score in near[:max_listed]:
            lines.append(f"  {score:.3f}  {a}  ~  {b}")
        if len(near) > max_listed:
            lines.append(f"  ... and {len(near) - max_listed} more (see near_duplicates.csv)")
    return "\n".join(lines)
