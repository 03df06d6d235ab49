"""Dataset scan: what is really in a folder of clips before anything is trained.

:func:`scan` reads every file of a dataset (folder-per-class tree, CSV
manifest, or a flat folder of unlabelled clips) on a process pool
(:func:`soundclass.util.pool.run_chunked`: a file that kills its worker fails
alone) and records its header, level and problems in a
:class:`~soundclass.data.scan_report.ScanRow`; one bad file becomes a row with
a reason and never stops the scan.  The report model lives in
:mod:`soundclass.data.scan_report`, the output files in
:mod:`soundclass.data.scan_writers`; both are re-exported here.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import math
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from soundclass import audio
from soundclass.data.dataset import Dataset, Item, discover, list_folder
from soundclass.data.fingerprint import DEFAULT_THRESHOLD, fingerprint
from soundclass.data.near_duplicates import MAX_FINGERPRINT_SECONDS, find_near_duplicates
from soundclass.data.scan_report import FLAGS, UNLABELLED, ScanReport, ScanRow, format_summary
from soundclass.data.scan_writers import write_scan_report
from soundclass.errors import AudioDecodeError, DatasetError, check_positive_int
from soundclass.util.executors import default_n_jobs, preload_in_workers
from soundclass.util.hashing import file_digest
from soundclass.util.pool import run_chunked
from soundclass.util.progress import progress_bar

__all__ = [
    "FLAGS",
    "UNLABELLED",
    "ScanRow",
    "ScanReport",
    "scan",
    "scan_file",
    "write_scan_report",
    "format_summary",
]

preload_in_workers(__name__)  # its functions run in pool workers

_FLOAT_SUBTYPES = ("FLOAT", "DOUBLE")
_CLIP_LEVELS = {"PCM_S8": 0.99, "PCM_U8": 0.99}


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
    return _scan_one(path, label=label, n_fft=n_fft, clip_level=clip_level, clip_run=clip_run)[0]


def _fingerprint(y: np.ndarray, sr: float) -> np.ndarray | None:
    """The near-duplicate fingerprint of a decoded clip (``None`` for long recordings or odd input)."""
    if y.shape[-1] > MAX_FINGERPRINT_SECONDS * sr:
        return None
    try:
        return fingerprint(y, sr=sr)
    except Exception:  # noqa: BLE001 - no fingerprint only means no near-duplicate check
        return None


def _scan_one(
    path: str | os.PathLike,
    *,
    label: str | None = None,
    n_fft: int = 2048,
    clip_level: float | None = None,
    clip_run: int = 3,
    want_fingerprint: bool = False,
) -> tuple[ScanRow, np.ndarray | None]:
    """:func:`scan_file` (same parameters; never raises for a bad file) and, with
    ``want_fingerprint``, the clip's near-duplicate fingerprint.

    Returns
    -------
    (ScanRow, np.ndarray or None)
        The row and the fingerprint (``None`` unless wanted and computable).
    """
    path = os.fspath(path)
    fields_: dict = {"path": path, "label": label, "name": os.path.basename(path)}
    try:
        fields_["size_bytes"], fields_["sha256"] = file_digest(path)
    except OSError as exc:
        return ScanRow(**fields_, error=f"cannot read file ({exc.strerror or exc})"), None
    try:
        out = audio.decode(path, sr=None, mono=False)
    except Exception as exc:  # one odd file must never stop a scan
        if isinstance(exc, AudioDecodeError):
            error = exc.reason
        else:
            error = f"unexpected {type(exc).__name__}: {exc}"
        try:  # the header may still say what the file claims to be
            head = audio.info(path)
            fields_.update(format=head.format, subtype=head.subtype, sr=head.sr,
                           channels=head.channels, frames=head.frames, duration=head.duration,
                           multichannel=head.channels > 1, very_short=head.frames < n_fft)
        except Exception:
            pass
    else:
        y = out.y
        fields_.update(format=out.format, subtype=out.subtype, sr=out.sr_native,
                       channels=out.channels, frames=out.frames, duration=out.duration,
                       multichannel=out.channels > 1, very_short=out.frames < n_fft,
                       truncated=out.truncated, warnings="; ".join(out.warnings))
        y2 = y.reshape(-1, y.shape[-1]).astype(np.float64, copy=False)
        peak = float(np.max(np.abs(y2))) if y2.size else 0.0
        rms = float(np.sqrt(np.mean(np.square(y2)))) if y2.size else 0.0
        over = peak > 1.0 and out.subtype in _FLOAT_SUBTYPES
        level = clip_level if clip_level is not None else _CLIP_LEVELS.get(out.subtype, 0.999)
        clipped = over or _longest_run(np.abs(y2) >= level) >= clip_run
        fp = _fingerprint(y, out.sr_native) if want_fingerprint else None
        return ScanRow(**fields_, peak_dbfs=_db(peak), rms_dbfs=_db(rms),
                       silent=audio.is_silent(y), clipped=bool(clipped)), fp
    nonfinite = False
    if fields_.get("subtype") in _FLOAT_SUBTYPES:
        try:
            nonfinite = _count_nonfinite(path) > 0
        except Exception:  # the reason above already says why it is unusable
            nonfinite = False
    return ScanRow(**fields_, nonfinite=nonfinite, error=error), None


def _scan_job(job: tuple[str, str | None], *, n_fft: int, fingerprints: bool) -> tuple[ScanRow, np.ndarray | None]:
    path, label = job
    return _scan_one(path, label=label, n_fft=n_fft, want_fingerprint=fingerprints)


def _lost_row(job: tuple[str, str | None], reason: str, kind: str) -> tuple[ScanRow, None]:
    path, label = job
    return ScanRow(path, label, os.path.basename(path), error=reason), None


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
        listing = list_folder(root_path)
        if not listing.paths:
            raise
        return Dataset(tuple(Item(p, None) for p in listing.paths), (), str(root_path), listing.skipped)


def scan(
    root: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    executor: cf.Executor | None = None,
    n_fft: int = 2048,
    near_duplicates: float | None = DEFAULT_THRESHOLD,
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
    near_duplicates : float or None
        Fingerprint similarity at which two different files are listed as near
        duplicates (:mod:`soundclass.data.fingerprint`; clips up to
        :data:`~soundclass.data.near_duplicates.MAX_FINGERPRINT_SECONDS`);
        ``None`` or 0: not looked for.

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
    n_fft = check_positive_int("n_fft", n_fft)
    start = time.perf_counter()
    workers = default_n_jobs(n_jobs)  # validates n_jobs
    dataset = _dataset(root, manifest)
    jobs = [(it.path, it.label) for it in dataset.items]
    bar = progress_bar(len(jobs), desc="scan", enabled=progress)
    try:
        done = run_chunked(functools.partial(_scan_job, n_fft=n_fft, fingerprints=bool(near_duplicates)),
                           jobs, on_failure=_lost_row, executor=executor, n_jobs=workers,
                           max_chunksize=64, progress=bar.update)
    finally:
        bar.close()
    done.sort(key=lambda rf: rf[0].path)
    rows = [r for r, _ in done]
    pairs: tuple = ()
    if near_duplicates:
        found = find_near_duplicates([fp for _, fp in done], threshold=float(near_duplicates),
                                     hashes=[r.sha256 or None for r in rows])
        pairs = tuple((rows[i].path, rows[j].path, float(score)) for i, j, score in found)
    return ScanReport(tuple(rows), root=str(manifest or root), classes=dataset.classes,
                      seconds=time.perf_counter() - start, n_fft=n_fft, near_duplicates=pairs,
                      near_duplicate_threshold=float(near_duplicates or 0.0), skipped=dataset.skipped)
