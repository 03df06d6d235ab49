"""The best normalised cross-correlation over time lags, for many pairs at once.

The score of :func:`soundclass.data.fingerprint.similarity`: for arrays
``a`` [shape=(n_bands, t_a)] and ``b`` [shape=(n_bands, t_b)], at every lag
keeping at least ``m = max(2, ceil(min_overlap * min(t_a, t_b)))`` frames of
overlap, the Pearson correlation of the overlapping parts (each band centred
on its own overlap mean, pooled over bands); the score is the best lag's, 0 at
a lag where either part is constant, and 0 when no lag keeps ``m`` frames.

:func:`lag_correlations` computes it exactly (float64).  With ``t_a <= t_b``
the kept lags ``L`` (``b[t - L]`` lies under ``a[t]``) are ``m - t_b .. t_a - m``:

- the raw cross products of all lags come from one FFT per array: the band
  sum of ``rfft(a) * conj(rfft(b))``, then one inverse FFT.  An FFT size
  ``>= t_a + t_b - m`` makes the circular correlation equal the linear one at
  every kept lag;
- the centring terms come from sums over windows of frames: ``cov = cross -
  <s_a, s_b> / n`` and ``var = e - |s|^2 / n`` for the band sums ``s`` and
  the energy ``e`` of an overlap of ``n`` frames.  The shorter array's
  overlaps are always a prefix or a suffix, the longer one's too except when
  the shorter lies inside it, so the window sums are rows of tables of prefix
  and suffix sums (kept time-major) and their squared norms are read, not
  recomputed;
- every pair is vectorised over its lags, many pairs at a time.

:func:`lag_correlation_bounds` gives upper bounds of the scores from a few
band groups only, to rule pairs out before the exact computation.

Pairs are grouped by their shorter array into blocks held in memory at one
FFT size and their partners streamed in chunks, so memory stays within
``max_bytes`` however many arrays there are, and an array's transforms serve
all its pairs in a block.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.fft import next_fast_len

__all__ = ["MAX_BYTES", "lag_correlations", "lag_correlation_bounds"]

#: Default bound on the per-array tables held at once (FFTs, window sums), in bytes.
MAX_BYTES = 64 * 2**20
_WORK = 1 << 17  # elements of one (pairs, lags, n_bands) work array: about an L2 cache
_GROWTH = 1.5  # largest FFT size of a block over its first array's own need
# Group variances below this fraction of the array's energy are not bounded.  Rounding in the sums
# is about 1e-15 of that energy, so above it rho and the sines are good to about 1e-9 (the sines'
# square roots to 3e-5), far inside the margin the caller leaves below its threshold.
_QUIET = 1e-6
# sum_k conj(x1[..., k]) x2[..., k]; numpy < 2 has no vecdot
_vecdot = getattr(np, "vecdot", None) or (lambda x1, x2, out: np.einsum("...k,...k->...", np.conj(x1), x2, out=out))


class _Store:
    """Transforms of some arrays (or of their band groups) at one FFT size.

    ``spec`` [shape=(n, n_fft // 2 + 1, n_cols)] complex, for ``n_cols`` bands
    (or groups).  ``sums`` [shape=(n, 2 * (t_max + 1), n_cols)]: row ``h`` is
    the band sum of the first ``h`` frames, row ``t_max + 1 + l`` that of the
    frames from ``l`` to the end; ``norms`` their squared norms.  ``energy``
    [shape=(n, t_max + 1)]: sums of squares of the first ``t`` frames.  With
    band groups (``edges``, see :func:`lag_correlation_bounds`), ``residual``
    likewise holds the energy the groups leave out.
    """

    def __init__(self, arrays: Sequence[np.ndarray], n_fft: int, edges: np.ndarray | None = None,
                 pool: dict | None = None):
        n, n_bands = len(arrays), arrays[0].shape[0]
        n_cols = n_bands if edges is None else edges.size - 1
        lengths = [x.shape[1] for x in arrays]
        t_max = max(lengths)  # <= n_fft: a block's FFT size covers both arrays of each pair
        step = max(1, 4 * _WORK // (n_cols * t_max))  # arrays transformed together, zero-padded
        pool = {} if pool is None else pool

        def buffer(key: str, shape: tuple, dtype: type = np.float64) -> np.ndarray:
            # the previous store's memory, when it is large enough: fresh pages cost page faults
            size = int(np.prod(shape))
            if key not in pool or pool[key].size < size:
                pool[key] = np.empty(size, dtype=dtype)
            return pool[key][:size].reshape(shape)

        self.n_fft, self.suffix = n_fft, t_max + 1
        self.spec = buffer("spec", (n, n_fft // 2 + 1, n_cols), np.complex128)
        self.sums = buffer("sums", (n, 2 * (t_max + 1), n_cols))
        self.energy = buffer("energy", (n, t_max + 1))
        self.energy[:, 0] = 0.0
        self.residual = None if edges is None else buffer("residual", (n, t_max + 1))
        if self.residual is not None:
            self.residual[:] = 0.0
        scale = None if edges is None else 1.0 / np.sqrt(np.diff(edges))[:, None]
        prefix, frames = self.sums[:, : t_max + 1], self.sums[:, 1 : t_max + 1]
        prefix[:, 0] = 0.0
        for i, a in enumerate(arrays):  # the frames, time-major and zero-padded, where their sums go
            a = np.asarray(a)
            frames[i, lengths[i] :] = 0.0
            if edges is None:
                frames[i, : lengths[i]] = a.T
                continue
            # the orthonormal group projection, and the energy it leaves out, of the array less its
            # band means: a constant per band leaves every score unchanged (each overlap is centred),
            # and without it that energy is mostly not the variance it bounds
            a = a.astype(np.float64)
            a -= a.mean(axis=1, keepdims=True)
            if n_bands % n_cols:
                groups = np.add.reduceat(a, edges[:-1], axis=0) * scale
            else:  # equal groups: the same sums, faster
                groups = a.reshape(n_cols, n_bands // n_cols, -1).sum(axis=1) * scale
            frames[i, : lengths[i]] = groups.T
            rest = np.einsum("kt,kt->t", a, a) - np.einsum("kt,kt->t", groups, groups)
            np.cumsum(np.maximum(rest, 0.0), out=self.residual[i, 1 : lengths[i] + 1])
        for start in range(0, n, step):
            self.spec[start : start + step] = np.fft.rfft(frames[start : start + step], n_fft, axis=1)
        np.cumsum(np.einsum("ntk,ntk->nt", frames, frames), axis=1, out=self.energy[:, 1:])
        for t in range(t_max):  # the frames into prefix sums in place, in np.cumsum's order
            np.add(prefix[:, t], frames[:, t], out=frames[:, t])
        # suffix sums of each array from l to its own end (0 past the end), as window sums are
        total = prefix[np.arange(n), lengths]  # (n, n_cols)
        np.subtract(total[:, None, :], prefix, out=self.sums[:, t_max + 1 :])
        self.norms = np.einsum("ntk,ntk->nt", self.sums, self.sums, out=buffer("norms", self.sums.shape[:2]))

    @staticmethod
    def nbytes(n_cols: int, length: int, n_fft: int) -> int:
        return 16 * n_cols * (n_fft // 2 + 1 + length + 1) + 32 * (length + 1)


def _min_frames(shorter: np.ndarray, min_overlap: float) -> np.ndarray:
    """``m`` of each pair: ``max(2, ceil(min_overlap * t))`` for the shorter length ``t``."""
    return np.maximum(2, np.ceil(min_overlap * shorter.astype(np.float64)).astype(np.int64))


def _bound(cov: np.ndarray, var_a: np.ndarray, var_b: np.ndarray, rest_a: np.ndarray,
           rest_b: np.ndarray) -> np.ndarray:
    """The bound of :func:`lag_correlation_bounds` at every lag (>= 0)."""
    tot_a, tot_b = var_a + rest_a, var_b + rest_b
    sin2_a = np.where(tot_a > 0, rest_a / tot_a, 0.0)  # largest share of the variance outside the groups
    sin2_b = np.where(tot_b > 0, rest_b / tot_b, 0.0)
    den = var_a * var_b
    rho = np.clip(np.where(den > 0, cov / np.sqrt(den), 0.0), -1.0, 1.0)
    s2_lo, s2_hi = np.minimum(sin2_a, sin2_b), np.maximum(sin2_a, sin2_b)
    s_lo, s_hi, c_lo, c_hi = np.sqrt(s2_lo), np.sqrt(s2_hi), np.sqrt(1.0 - s2_lo), np.sqrt(1.0 - s2_hi)
    corner = rho * c_lo * c_hi + s_lo * s_hi
    inner = np.sqrt(rho * rho + (1.0 - rho * rho) * s2_lo)
    return np.maximum(np.where((rho > 0) & (rho * s_hi * c_lo >= s_lo * c_hi), inner, corner), 0.0)


def _chunk(rows: _Store, ia: np.ndarray, la: np.ndarray, cols: _Store, ib: np.ndarray,
           lb: np.ndarray, m: np.ndarray, bound: bool) -> np.ndarray:
    """Scores (bounds) of pairs ``(rows[ia], cols[ib])``, ``la <= lb``, ``2 <= m <= la``, by partner."""
    n_lags = la + lb - 2 * m + 1  # (P,)
    j = np.arange(int(n_lags.max()))[None, :]
    valid = j < n_lags[:, None]  # (P, K)
    lag = np.where(valid, (m - lb)[:, None] + j, (la - m)[:, None])  # invalid: any kept lag
    lo_a = np.maximum(lag, 0)
    hi_a = np.minimum(la[:, None], lb[:, None] + lag)
    n = hi_a - lo_a  # overlap frames
    lo_b, hi_b = lo_a - lag, hi_a - lag
    pa, pb = ia[:, None], ib[:, None]
    # a's overlap: a prefix (lag <= 0) or a suffix; b's: a suffix (hi_b = lb), a prefix (lo_b = 0) or inside
    row_a = np.where(lag <= 0, hi_a, rows.suffix + lo_a)
    row_b = np.where(hi_b == lb[:, None], cols.suffix + lo_b, hi_b)
    s_a, s_b = rows.sums[pa, row_a], cols.sums[pb, row_b]  # (P, K, n_bands) window sums
    s_aa, s_bb = rows.norms[pa, row_a], cols.norms[pb, row_b]
    inside = (lo_b > 0) & (hi_b < lb[:, None])
    if inside.any():
        p_in = np.broadcast_to(pb, inside.shape)[inside]
        s_b[inside] -= cols.sums[p_in, lo_b[inside]]
        s_bb[inside] = np.einsum("ij,ij->i", s_b[inside], s_b[inside])
    s_ab = np.einsum("pkj,pkj->pk", s_a, s_b)
    del s_a, s_b
    spectra = np.empty((ia.size, rows.spec.shape[1]), dtype=np.complex128)
    for p, (i, k) in enumerate(zip(ia.tolist(), ib.tolist(), strict=True)):
        _vecdot(cols.spec[k], rows.spec[i], out=spectra[p])  # sum over bands of A conj(B)
    cross = np.fft.irfft(spectra, rows.n_fft, axis=1)
    cross = np.take_along_axis(cross, lag % rows.n_fft, axis=1)  # sum_t a[t] b[t - lag]
    cov = cross - s_ab / n
    var_a = np.maximum(rows.energy[pa, hi_a] - rows.energy[pa, lo_a] - s_aa / n, 0.0)
    var_b = np.maximum(cols.energy[pb, hi_b] - cols.energy[pb, lo_b] - s_bb / n, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        if bound:
            rest_a = np.maximum(rows.residual[pa, hi_a] - rows.residual[pa, lo_a], 0.0)
            rest_b = np.maximum(cols.residual[pb, hi_b] - cols.residual[pb, lo_b], 0.0)
            score = _bound(cov, var_a, var_b, rest_a, rest_b)
            # group variances too small for their rounding to be negligible (it scales with the
            # array's whole energy): no bound there
            total_a = (rows.energy[ia, la] + rows.residual[ia, la])[:, None]
            total_b = (cols.energy[ib, lb] + cols.residual[ib, lb])[:, None]
            score[(var_a < _QUIET * total_a) | (var_b < _QUIET * total_b)] = np.inf
        else:
            den = np.sqrt(var_a * var_b)
            score = np.where(den > 1e-9, cov / den, 0.0)
    score[~valid] = -np.inf
    best = score.max(axis=1)
    return best if bound else np.clip(best, -1.0, 1.0)


def _pairs(rows: _Store, ia: np.ndarray, la: np.ndarray, cols: _Store, ib: np.ndarray, lb: np.ndarray,
           m: np.ndarray, bound: bool, out: np.ndarray, where: np.ndarray) -> None:
    """:func:`_chunk` over pairs sorted by partner, at most ``_WORK`` elements per work array."""
    n_bands = rows.sums.shape[2]
    n_lags = la + lb - 2 * m + 1
    start = 0
    while start < ia.size:
        peak = np.maximum.accumulate(n_lags[start:])
        fits = np.arange(1, peak.size + 1) * peak * n_bands <= _WORK
        stop = start + max(1, int(np.count_nonzero(fits)))
        out[where[start:stop]] = _chunk(rows, ia[start:stop], la[start:stop], cols, ib[start:stop],
                                        lb[start:stop], m[start:stop], bound)
        start = stop


def _run(arrays: Sequence[np.ndarray], first: np.ndarray, second: np.ndarray, min_overlap: float,
         max_bytes: int, edges: np.ndarray | None) -> np.ndarray:
    """The blocked driver of :func:`lag_correlations` and :func:`lag_correlation_bounds`."""
    first = np.asarray(first, dtype=np.int64).reshape(-1)
    second = np.asarray(second, dtype=np.int64).reshape(-1)
    out = np.zeros(first.size)
    if first.size == 0:
        return out
    bound = edges is not None
    n_cols = int(arrays[0].shape[0]) if edges is None else edges.size - 1
    lengths = np.array([x.shape[1] for x in arrays], dtype=np.int64)
    swap = lengths[first] > lengths[second]  # the shorter array of each pair first
    a, b = np.where(swap, second, first), np.where(swap, first, second)
    la, lb = lengths[a], lengths[b]
    m = _min_frames(la, min_overlap)
    todo = np.flatnonzero(m <= la)  # a 1-frame array has no lag keeping 2 frames: score 0
    if todo.size == 0:
        return out
    todo = todo[np.lexsort((b[todo], a[todo], la[todo]))]  # by shorter array (length, index), then partner
    need = la[todo] + lb[todo] - m[todo]  # smallest FFT size of each pair
    starts = np.flatnonzero(np.r_[True, a[todo][1:] != a[todo][:-1]])
    stops = np.r_[starts[1:], todo.size]
    row_ids, row_need = a[todo][starts], np.maximum.reduceat(need, starts)
    half = max(1, max_bytes // 2)
    local = np.full(len(arrays), -1, dtype=np.int64)

    pools: dict[str, dict] = {"rows": {}, "partners": {}}  # memory reused from block to block

    def store(ids: np.ndarray, n_fft: int, role: str) -> _Store:
        return _Store([arrays[i] for i in ids], n_fft, edges, pools[role])

    k = 0
    while k < row_ids.size:
        # a block of shorter arrays: as many as fit in half the bound, at one FFT size
        n_first = next_fast_len(int(row_need[k]), real=True)
        k1, frames, block_need = k, 0, 0
        while k1 < row_ids.size:
            grown = max(block_need, int(row_need[k1]))
            n_fft = next_fast_len(grown, real=True)
            grown_frames = frames + int(lengths[row_ids[k1]]) + 1
            size = (k1 - k + 1) * 16 * n_cols * (n_fft // 2 + 1) + grown_frames * (16 * n_cols + 32)
            if k1 > k and (size > half or n_fft > _GROWTH * n_first):
                break
            frames, block_need, k1 = grown_frames, grown, k1 + 1
        n_fft = next_fast_len(block_need, real=True)
        block_ids = row_ids[k:k1]
        rows = store(block_ids, n_fft, "rows")
        local[block_ids] = np.arange(block_ids.size)
        sel = todo[starts[k]:stops[k1 - 1]]
        sel = sel[np.argsort(b[sel], kind="stable")]  # by partner
        ia, ib = local[a[sel]], local[b[sel]]
        local[block_ids] = -1
        inside = ib >= 0  # partners in the block themselves
        if inside.any():
            _pairs(rows, ia[inside], la[sel[inside]], rows, ib[inside], lb[sel[inside]], m[sel[inside]],
                   bound, out, sel[inside])
        outside = np.flatnonzero(~inside)
        partners = np.unique(b[sel[outside]])  # the others, in chunks of half the bound
        q = 0
        while q < partners.size:
            q1, size = q + 1, _Store.nbytes(n_cols, int(lengths[partners[q]]), n_fft)
            while q1 < partners.size:
                size += _Store.nbytes(n_cols, int(lengths[partners[q1]]), n_fft)
                if size > half:
                    break
                q1 += 1
            chunk = partners[q:q1]
            cols = store(chunk, n_fft, "partners")
            part = outside[(b[sel[outside]] >= chunk[0]) & (b[sel[outside]] <= chunk[-1])]
            _pairs(rows, ia[part], la[sel[part]], cols, np.searchsorted(chunk, b[sel[part]]), lb[sel[part]],
                   m[sel[part]], bound, out, sel[part])
            q = q1
        k = k1
    return out


def lag_correlations(
    arrays: Sequence[np.ndarray],
    first: np.ndarray,
    second: np.ndarray,
    *,
    min_overlap: float,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Best normalised cross-correlation over time lags of many pairs of arrays.

    Parameters
    ----------
    arrays : sequence of np.ndarray [shape=(n_bands, t_i)]
        All with the same ``n_bands``; ``t_i >= 1``.
    first, second : np.ndarray of int [shape=(n_pairs,)]
        The pairs, as indices into ``arrays``.
    min_overlap : float in (0, 1]
        Lags must keep at least this fraction of the shorter array.
    max_bytes : int > 0
        Bound on the per-array tables held at once (at least one array and
        one partner are held, whatever the bound).

    Returns
    -------
    np.ndarray of float64 [shape=(n_pairs,)]
        Each pair's score in [-1, 1] (see the module text), symmetric in the
        two arrays.
    """
    return _run(arrays, first, second, min_overlap, max_bytes, None)


def lag_correlation_bounds(
    arrays: Sequence[np.ndarray],
    first: np.ndarray,
    second: np.ndarray,
    *,
    min_overlap: float,
    n_groups: int = 16,
    max_bytes: int = MAX_BYTES,
) -> np.ndarray:
    """Upper bounds of :func:`lag_correlations` from ``n_groups`` band groups.

    A constant per band changes no score (every overlap is centred), so each
    array first loses its band means.  Each frame then splits orthogonally
    into its projection on the band groups (``n_groups`` runs of adjacent
    bands; the group sums over the square root of the group size) and the
    rest.  At every lag the centred overlaps split exactly: ``cov = cov_g +
    cov_r`` and ``var = var_g + var_r``, with ``|cov_r| <= sqrt(var_r,a
    var_r,b)`` (Cauchy-Schwarz) and ``var_r <= e_r``, the rest's plain sum of
    squares over the overlap (a sum of squares is smallest about the mean).
    With ``rho = cov_g / sqrt(var_g,a var_g,b)`` and ``sin^2 x = var_r / var``
    the score is ``rho cos x_a cos x_b + sin x_a sin x_b``, each ``x`` at most
    ``X`` with ``sin^2 X = e_r / (var_g + e_r)``.  The largest value over those
    angles bounds the lag's score: at ``(X_a, X_b)``, or, when ``rho > 0`` and
    ``rho tan(max X) >= tan(min X)``, ``sqrt(rho^2 + (1 - rho^2) sin^2(min
    X))``; and 0 bounds a lag whose exact score is 0.  Only the groups go
    through the FFTs and window sums, so pairs far below a threshold are ruled
    out cheaply.

    Parameters
    ----------
    arrays, first, second, min_overlap, max_bytes
        As :func:`lag_correlations`.
    n_groups : int >= 1
        Number of band groups (at most ``n_bands`` are used).

    Returns
    -------
    np.ndarray of float64 [shape=(n_pairs,)]
        ``>= lag_correlations(...)`` pair by pair, up to float64 rounding
        (below 1e-4, see ``_QUIET``); ``inf`` where a lag's group variance is
        below 1e-6 of an array's energy, so that rounding could matter.
    """
    if not len(arrays):
        return np.zeros(np.size(first))
    n_bands = int(arrays[0].shape[0])
    edges = np.unique(np.linspace(0, n_bands, min(n_groups, n_bands) + 1).round().astype(np.int64))
    return _run(arrays, first, second, min_overlap, max_bytes, edges)
