"""What a prediction run returns: class probabilities of a list of files, and their top-k labels.

:class:`Predictions` is written by :func:`soundclass.inference.predict.predict_paths`
and read by :func:`soundclass.inference.submission.write_submission`, the
evaluation and the "unknown" rejection; it lives here so that neither the
predicting nor the writing module imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from soundclass.errors import ParameterError

__all__ = ["Predictions", "FAILED_POLICIES", "top_k_labels"]

FAILED_POLICIES = ("most_frequent", "skip", "error")
"""What a submission does with files that could not be predicted (see ``write_submission``)."""


@dataclass(frozen=True, eq=False)
class Predictions:
    """Class probabilities of a list of files.

    Attributes
    ----------
    paths : tuple of str
        Every input file, in input order (failed ones included).
    proba : np.ndarray [shape=(len(paths), n_classes)]
        Probabilities; rows of failed files are NaN.
    failures : Mapping[str, str]
        ``path -> reason`` for every file that could not be predicted.
    classes : tuple of str
        Column names of ``proba`` (the checkpoint's classes).
    """

    paths: tuple[str, ...]
    proba: np.ndarray
    failures: Mapping[str, str] = field(default_factory=dict)
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.proba.ndim != 2 or self.proba.shape[0] != len(self.paths):
            raise ParameterError(
                f"proba.shape={self.proba.shape} must be (len(paths)={len(self.paths)}, n_classes)"
            )
        if self.classes and len(self.classes) != self.proba.shape[1]:
            raise ParameterError(
                f"{len(self.classes)} classes do not match proba.shape[1]={self.proba.shape[1]}"
            )

    @property
    def ok(self) -> np.ndarray:
        """Boolean mask [shape=(len(paths),)] of files that were predicted."""
        return np.array([p not in self.failures for p in self.paths], dtype=bool)

    @property
    def predicted(self) -> np.ndarray:
        """Index of the most probable class per file, ``-1`` for failed files."""
        out = np.full(len(self.paths), -1, dtype=np.int64)
        ok = self.ok
        if ok.any():
            out[ok] = np.argmax(self.proba[ok], axis=1)
        return out


def top_k_labels(proba: np.ndarray, *, classes: Sequence[str], k: int) -> list[list[str]]:
    """The ``k`` most probable class names of each row, most probable first.

    Parameters
    ----------
    proba : np.ndarray [shape=(n, n_classes)]
    classes : sequence of str [length n_classes]
    k : int

    Returns
    -------
    list of list of str [shape=(n, k)]
        Ties are broken by class order (stable sort).
    """
    order = np.argsort(-np.asarray(proba), axis=1, kind="stable")[:, :k]
    return [[classes[j] for j in row] for row in order]
