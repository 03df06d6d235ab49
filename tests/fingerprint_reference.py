"""The near-duplicate search as it was before batching: the oracle of the fast one.

``reference_similarity`` and ``reference_near_duplicate_pairs`` are
:func:`soundclass.data.fingerprint.similarity` and ``near_duplicate_pairs``
of commit f67fb9e, unchanged but for their names (and ``precise``): one pair
at a time, per-band FFTs in the fingerprints' float32, the same two pre-filters.  The tests
compare the fast search with them; ``benchmarks/near_duplicates.py`` times
them side by side.  Import as ``from fingerprint_reference import ...``
(``tests/`` is on ``sys.path`` under pytest, as for ``helpers``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundclass.data.fingerprint import (
    DEFAULT_THRESHOLD,
    DURATION_TOLERANCE,
    MIN_OVERLAP,
    PROFILE_TOLERANCE_DB,
)

_BLOCK = 512


def _check_fp(fp: np.ndarray) -> np.ndarray:
    fp = np.asarray(fp, dtype=np.float32)
    assert fp.ndim == 2 and fp.shape[1] >= 1, fp.shape
    return fp


def reference_similarity(a: np.ndarray, b: np.ndarray, *, min_overlap: float = MIN_OVERLAP,
                         precise: bool = False) -> float:
    """Best normalised cross-correlation of two fingerprints over time lags, pair by pair.

    ``precise=True`` runs the FFTs in float64 instead of the fingerprints'
    float32 (the one change), which measures the reference's own rounding.
    """
    a, b = _check_fp(a), _check_fp(b)
    if precise:
        a, b = a.astype(np.float64), b.astype(np.float64)
    la, lb = a.shape[1], b.shape[1]
    lags = np.arange(-(lb - 1), la)  # b[t - lag] lies under a[t]
    lo_a, hi_a = np.maximum(lags, 0), np.minimum(la, lb + lags)  # a[lo_a:hi_a] overlaps b
    overlap = hi_a - lo_a
    keep = overlap >= max(2, int(np.ceil(min_overlap * min(la, lb))))
    if not keep.any():
        return 0.0
    lags, lo_a, hi_a, overlap = lags[keep], lo_a[keep], hi_a[keep], overlap[keep]
    lo_b, hi_b = lo_a - lags, hi_a - lags
    size = 1 << int(np.ceil(np.log2(la + lb)))
    # cross[lag] = sum_t a[:, t] b[:, t - lag], one row per band
    cross = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)[:, lags % size]

    def window_sums(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = x.astype(np.float64)  # sums of squares: cancellation needs the precision
        c1 = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
        c2 = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x * x, axis=1)], axis=1)
        return c1[:, hi] - c1[:, lo], c2[:, hi] - c2[:, lo]  # (n_bands, n_lags)

    sa, saa = window_sums(a, lo_a, hi_a)
    sb, sbb = window_sums(b, lo_b, hi_b)
    # Pearson over the overlap, each band centred on its own overlap mean, pooled over bands
    cov = (cross - sa * sb / overlap).sum(axis=0)
    var_a = np.maximum(saa - sa * sa / overlap, 0).sum(axis=0)
    var_b = np.maximum(sbb - sb * sb / overlap, 0).sum(axis=0)
    den = np.sqrt(var_a * var_b)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(den > 1e-9, cov / den, 0.0)
    return float(np.clip(score.max(), -1.0, 1.0)) if score.size else 0.0


def _profile(fp: np.ndarray) -> np.ndarray:
    v = fp.mean(axis=1)
    return v - v.mean()


def reference_near_duplicate_pairs(
    fingerprints: Sequence[np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    duration_tolerance: float = DURATION_TOLERANCE,
    profile_tolerance_db: float = PROFILE_TOLERANCE_DB,
) -> list[tuple[int, int, float]]:
    """Pairs ``(i, j, score)``, ``i < j``, at least ``threshold`` similar, sorted; pair by pair."""
    index = [i for i, fp in enumerate(fingerprints) if fp is not None]
    if len(index) < 2:
        return []
    fps = [_check_fp(fingerprints[i]) for i in index]
    lengths = np.array([fp.shape[1] for fp in fps], dtype=np.float64)
    shapes = np.stack([_profile(fp) for fp in fps])  # (n, n_bands)
    order = np.argsort(lengths, kind="stable")
    lengths_sorted, shapes_sorted = lengths[order], shapes[order]
    cut = shapes.shape[1] * profile_tolerance_db**2  # squared distance = n_bands * rms**2
    pairs: list[tuple[int, int, float]] = []
    n = len(fps)
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(n, start + _BLOCK))
        stop = int(np.searchsorted(lengths_sorted, lengths_sorted[rows.stop - 1] / max(1e-9, 1 - duration_tolerance), "right"))
        cols = slice(start, max(stop, rows.stop))
        pa, pb = shapes_sorted[rows], shapes_sorted[cols]
        sq = (pa**2).sum(1)[:, None] + (pb**2).sum(1)[None, :] - 2.0 * pa @ pb.T  # (block, cols)
        li, lj = lengths_sorted[rows][:, None], lengths_sorted[cols][None, :]
        ok = (sq <= cut) & (np.abs(lj - li) <= duration_tolerance * np.maximum(li, lj))
        ii = np.arange(rows.start, rows.stop)[:, None]
        jj = np.arange(cols.start, cols.stop)[None, :]
        ok &= jj > ii
        for r, c in zip(*np.nonzero(ok), strict=True):
            a, b = int(order[rows.start + r]), int(order[cols.start + c])
            score = reference_similarity(fps[a], fps[b])
            if score >= threshold:
                i, j = sorted((index[a], index[b]))
                pairs.append((i, j, score))
    return sorted(pairs)
