"""Writing submission CSVs and the list of files that could not be predicted.

:func:`write_submission` writes the Tianchi/Kaggle format ``name,label``
(file name only, input order, no index column), optionally with top-k or
probability columns.  A submission must list every file, so by default a file
that could not be decoded gets the most likely class a priori
(``failed='most_frequent'``), a warning on stderr and a row in
``<csv stem>.failed.csv`` (:func:`failed_list_path`).

Every file name can be written: the CSVs go through
:func:`soundclass.util.csvfile.write_csv` (UTF-8 with ``surrogateescape``,
RFC 4180 quoting of CR/LF/tab, atomic).  ``excel_safe=True`` (``soundclass
predict --excel-safe``) prefixes ``'`` to cells that start like a spreadsheet
formula (``=``, ``+``, ``-``, ``@``, tab, CR); off by default because it changes
the names a grader compares against.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from soundclass.data.dataset import display_path
from soundclass.errors import ParameterError, SoundclassError, check_int
from soundclass.inference.predictions import FAILED_POLICIES, Predictions, top_k_labels
from soundclass.util.csvfile import CSV_ENCODING, CSV_ERRORS, excel_safe_cell, write_csv

__all__ = ["write_submission", "failed_list_path", "write_csv", "excel_safe_cell",
           "CSV_ENCODING", "CSV_ERRORS"]

def failed_list_path(out_csv: str | os.PathLike) -> Path:
    """Where :func:`write_submission` lists the files it could not predict.

    ``<folder>/<csv stem>.failed.csv`` beside the submission (``submit.csv`` ->
    ``submit.failed.csv``), so two submissions in one folder keep separate lists.
    """
    out_csv = Path(out_csv)
    return out_csv.with_name(out_csv.stem + ".failed.csv")




def _fallback_proba(predictions: Predictions, prior: np.ndarray | None, n_classes: int) -> np.ndarray:
    """The distribution given to failed files: ``prior`` or the predicted-label frequencies."""
    if prior is not None:
        prior = np.asarray(prior, dtype=np.float64)
        if prior.shape != (n_classes,) or not np.isfinite(prior).all() or (prior < 0).any() or prior.sum() <= 0:
            raise ParameterError(f"prior must be {n_classes} finite non-negative numbers, not all zero")
        return prior / prior.sum()
    predicted = predictions.predicted
    predicted = predicted[predicted >= 0]
    if predicted.size == 0:
        raise SoundclassError(
            "no file could be predicted, so there is no most frequent class to fill in; "
            "pass prior= or failed='skip'"
        )
    counts = np.bincount(predicted, minlength=n_classes).astype(np.float64)
    return counts / counts.sum()


def write_submission(
    predictions: Predictions,
    out_csv: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    top_k: int = 1,
    with_proba: bool = False,
    failed: str = "most_frequent",
    prior: np.ndarray | None = None,
    excel_safe: bool = False,
) -> Path:
    """Write a submission CSV: ``name,label`` (+ ``label_2..label_k``) (+ ``proba_<class>``).

    Parameters
    ----------
    predictions : soundclass.inference.predictions.Predictions
    out_csv : path
        The CSV to write (UTF-8 with ``surrogateescape``, ``\\n`` line ends,
        minimal quoting, no index column; see the module notes).
    classes : sequence of str, optional
        Class names of the probability columns; default ``predictions.classes``.
    top_k : int
        ``1``: just ``label``; ``k > 1`` adds ``label_2`` .. ``label_k``, the
        next most probable classes.
    with_proba : bool
        Add one ``proba_<class>`` column per class (6 decimals).
    failed : {'most_frequent', 'skip', 'error'}
        What to do with files that could not be predicted.  ``'most_frequent'``
        (default, so the submission lists every file): give them the most
        likely class a priori (``prior``, else the most frequently predicted
        class of this batch) and that distribution as probabilities;
        ``'skip'``: leave them out; ``'error'``: raise.  In the first two cases
        they are reported on stderr and listed, with reasons, in
        :func:`failed_list_path` (columns ``path,reason``).
    prior : np.ndarray [shape=(n_classes,)], optional
        Class prior (e.g. training class counts) used for failed files.
    excel_safe : bool
        Prefix ``'`` to cells starting with ``=``, ``+``, ``-``, ``@``, tab or
        CR, so a spreadsheet shows them as text instead of running a formula
        (in the submission and the failed list).

    Returns
    -------
    Path
        ``out_csv``.

    Raises
    ------
    ParameterError
        On bad ``top_k``/``failed``/``classes``/``prior``.
    SoundclassError
        If ``failed='error'`` and some file failed.
    """
    classes = tuple(classes if classes is not None else predictions.classes)
    n_classes = predictions.proba.shape[1]
    if len(classes) != n_classes:
        raise ParameterError(f"{len(classes)} classes given for {n_classes} probability columns")
    top_k = check_int("top_k", top_k, low=1, high=n_classes)
    if failed not in FAILED_POLICIES:
        raise ParameterError(f"failed={failed!r} must be one of {FAILED_POLICIES}")
    out_csv = Path(out_csv)
    failures = {p: predictions.failures[p] for p in predictions.paths if p in predictions.failures}
    if failures and failed == "error":
        first = next(iter(failures.items()))
        raise SoundclassError(
            f"{len(failures)} file(s) could not be predicted, e.g. {display_path(first[0])}: {first[1]}"
        )

    proba = np.array(predictions.proba, dtype=np.float64)
    ok = predictions.ok
    if failures and failed == "most_frequent":
        proba[~ok] = _fallback_proba(predictions, prior, n_classes)
        ok = np.ones(len(predictions.paths), dtype=bool)
    rows = np.flatnonzero(ok)
    names = [os.path.basename(predictions.paths[i]) for i in rows]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        warnings.warn(
            f"{len(dup)} file name(s) occur more than once in {display_path(out_csv)} (e.g. {display_path(dup[0])!r}); "
            "the submission format only keeps file names",
            stacklevel=2,
        )

    header = ["name", "label"] + [f"label_{j}" for j in range(2, top_k + 1)]
    if with_proba:
        header += [f"proba_{c}" for c in classes]
    labels = top_k_labels(proba[rows], classes=classes, k=top_k) if rows.size else []

    def records():
        for name, i, top in zip(names, rows, labels, strict=True):
            row = [name, *top]
            if with_proba:
                row += [f"{v:.6f}" for v in proba[i]]
            yield row

    write_csv(out_csv, header, records(), excel_safe=excel_safe)

    listing = failed_list_path(out_csv)
    if failures:
        write_csv(listing, ["path", "reason"], ([p, str(r)] for p, r in failures.items()),
                  excel_safe=excel_safe)
        what = "given the most frequent class" if failed == "most_frequent" else "left out"
        print(
            f"warning: {len(failures)} file(s) could not be decoded and were {what}; "
            f"see {display_path(listing)}",
            file=sys.stderr,
        )
        for p, reason in list(failures.items())[:5]:
            print(f"  {display_path(p)}: {reason}", file=sys.stderr)
    elif listing.exists():
        listing.unlink()  # a stale list from an earlier run would mislead
    return out_csv
