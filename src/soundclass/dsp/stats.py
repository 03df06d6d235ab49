"""Clip statistics of a feature matrix: the fixed-length input of the classical models.

A ``(n_features, t)`` feature (MFCC + deltas, log-mel, aiSFX block
embeddings) is summarised over time by per-row statistics, stacked
statistic-major: ``[mean of every row, std of every row, ...]``.
:class:`soundclass.models.classical.FeatureStats` computes the same in torch
inside the models, so a model takes the cached per-clip feature itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundclass.errors import ParameterError

__all__ = ["STATS", "check_stats", "feature_stats", "stack_stats"]

#: Statistics over time, in the order they may be asked for.
STATS = ("mean", "std", "min", "max")


def check_stats(stats: Sequence[str]) -> tuple[str, ...]:
    """``stats`` as a tuple, checked: non-empty, known names, no repeats."""
    if isinstance(stats, str):
        stats = (stats,)
    stats = tuple(stats)
    unknown = [s for s in stats if s not in STATS]
    if not stats or unknown or len(set(stats)) != len(stats):
        raise ParameterError(f"stats={stats!r} must be distinct names from {STATS}")
    return stats


def feature_stats(S: np.ndarray, *, stats: Sequence[str] = ("mean", "std")) -> np.ndarray:
    """Per-row statistics over time of one feature matrix.

    Parameters
    ----------
    S : np.ndarray [shape=(n_features, t)]
        ``t >= 1`` frames.
    stats : sequence of {'mean', 'std', 'min', 'max'}
        ``std`` is the population standard deviation (``ddof=0``).

    Returns
    -------
    np.ndarray [shape=(len(stats) * n_features,)], float64
        ``[stats[0] of every row, stats[1] of every row, ...]``.
    """
    stats = check_stats(stats)
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] == 0:
        raise ParameterError(f"S must have shape (n_features, t) with t >= 1, got shape={S.shape}")
    mean = S.mean(axis=1)
    parts = {
        "mean": lambda: mean,
        "std": lambda: np.sqrt(np.mean((S - mean[:, None]) ** 2, axis=1)),
        "min": lambda: S.min(axis=1),
        "max": lambda: S.max(axis=1),
    }
    return np.concatenate([parts[s]() for s in stats])


def stack_stats(features: Sequence[np.ndarray], *, stats: Sequence[str] = ("mean", "std")) -> np.ndarray:
    """:func:`feature_stats` of many clips as one design matrix.

    Parameters
    ----------
    features : sequence of np.ndarray [shape=(n_features, t_i)]
        Clips of equal ``n_features`` (lengths may differ).
    stats : sequence of str

    Returns
    -------
    np.ndarray [shape=(n_clips, len(stats) * n_features)], float64

    Notes
    -----
    One pass over ``features``, one clip at a time: a sequence that reads
    its clips on access (features still in the cache) is read once and never
    held whole.
    """
    if len(features) == 0:
        raise ParameterError("features is empty")
    rows: set[int | None] = set()
    out = []
    for f in features:
        rows.add(np.shape(f)[0] if np.ndim(f) == 2 else None)
        if None in rows or len(rows) != 1:
            raise ParameterError(f"features must all be (n_features, t) with one n_features, "
                                 f"got {sorted(map(str, rows))}")
        out.append(feature_stats(f, stats=stats))
    return np.stack(out)
