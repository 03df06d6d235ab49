"""A cheap audio fingerprint for near duplicates, and the pairs it flags.

Near duplicates are one recording stored twice with a change that leaves the
sound the same: re-encoded (MP3, OGG/Vorbis), gain-changed, trimmed by up to
about 10 % at either end, resampled.  Such copies leak through a split as well
as byte-identical ones, but their content hashes differ.

The fingerprint is a log-mel band-energy sequence at a fixed low rate
(:data:`FP_SR` = 8 kHz; :data:`FP_BANDS` = 256 mel bands from 50 Hz to 3.8 kHz,
fine enough to see harmonics; 128 ms windows every 8 ms), in dB floored
:data:`FP_TOP_DB` = 60 dB below the clip's loudest cell, with each frame's
mean over the bands removed.  Relative to the peak, a gain change disappears;
resampling and lossy coding move the values little; without the per-frame
level the loudness envelope (speech, pause) cannot make two takes of one word
look alike.  Two fingerprints are compared by a normalised cross-correlation
over time lags (:func:`similarity`): at every lag keeping at least
:data:`MIN_OVERLAP` (85 %) of the shorter clip, the Pearson correlation of the
overlapping parts (each band centred on its overlap mean, pooled over bands);
the score is the best lag's.  A trim is a lag, so it costs only the lost frames.

:data:`DEFAULT_THRESHOLD` = 0.835 was chosen from measurements (issue 10):

- copies of synthetic clips of all four demo classes (MP3, OGG, gain x0.3,
  10 % trim at either end, 44.1 kHz -> 16 kHz, MP3 + trim + gain): >= 0.845
  (the lowest: a trimmed 'fizz', noise-like); copies of FSDD clips: >= 0.916;
- distinct clips of one synthetic class (other source or seed): <= 0.715;
- FSDD, 3000 clips: 60 pairs flagged, every one the same speaker saying the
  same digit in consecutive takes (highest 0.892); none between speakers.

The margins are thin (about 0.01 on either side of the threshold), which is
why the threshold is a parameter everywhere.

:func:`near_duplicate_pairs` keeps 10 000 clips tractable in three steps:

1. two vectorised pre-filters over blocks of duration-sorted clips: frame
   counts within :data:`DURATION_TOLERANCE` (15 %) and long-term spectral
   shapes within :data:`PROFILE_TOLERANCE_DB` (3 dB RMS; copies measured
   <= 1.5 dB).  On FSDD they leave 11 150 of the 4.5 M pairs (1 in 400), on
   DonateACry (457 cries of about 7 s) 10 768 of 104 196 (1 in 10);
2. upper bounds of the score from 16 band groups (pairs of long clips), then
   from 64 (:func:`soundclass.data.lag_correlation.lag_correlation_bounds`)
   rule out every pair whose score provably stays 1e-3 below the threshold:
   on DonateACry all of them, on FSDD all but 1 948;
3. the rest are scored exactly, as :func:`similarity` scores one pair
   (:func:`soundclass.data.lag_correlation.lag_correlations`: all lags of a
   pair from one FFT per clip, many pairs at a time, in float64).

Pair by pair (three float32 FFTs of every band per pair) the search took
155 s on DonateACry and 14.7 s on FSDD; it now takes 2.1 s and 2.0 s
(``benchmarks/near_duplicates.py``, shared 2-CPU machine), flagging the same
pairs, with scores within 1.2e-7 of the old ones (the rounding of its float32
FFTs).  On FSDD most of it is per clip (FFTs and window sums of the 3000
clips at 64 groups, of 1 200 at 256 bands), so it gains 7x, not 70x.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from soundclass.audio import check_audio, resample, to_mono
from soundclass.data.lag_correlation import lag_correlation_bounds, lag_correlations
from soundclass.dsp.features import melspectrogram
from soundclass.errors import ParameterError

__all__ = [
    "FP_SR",
    "FP_BANDS",
    "FP_N_FFT",
    "FP_HOP_LENGTH",
    "FP_TOP_DB",
    "MIN_OVERLAP",
    "DURATION_TOLERANCE",
    "PROFILE_TOLERANCE_DB",
    "DEFAULT_THRESHOLD",
    "fingerprint",
    "similarity",
    "near_duplicate_pairs",
]

FP_SR = 8000
FP_BANDS = 256
FP_N_FFT = 1024
FP_HOP_LENGTH = 64
FP_FMIN = 50.0
FP_FMAX = 3800.0
FP_TOP_DB = 60.0
#: Shortest overlap of two clips a lag may leave, as a fraction of the shorter clip.
MIN_OVERLAP = 0.85
#: Largest relative duration difference :func:`near_duplicate_pairs` compares.
DURATION_TOLERANCE = 0.15
#: Largest RMS difference (dB) of two clips' long-term spectra :func:`near_duplicate_pairs` compares.
PROFILE_TOLERANCE_DB = 3.0
#: Similarity at and above which two clips are near duplicates (see the module text).
DEFAULT_THRESHOLD = 0.835
_BLOCK = 512
# The upper bounds that rule pairs out before the exact score: (band groups, pairs of at least this
# many frames together).  16 groups are cheap and enough for dissimilar long clips, where the exact
# score costs most; 64 groups are tighter.  A bound must stay this far below the threshold (far
# above float64 rounding, see lag_correlation) for its pair to be left out.
_BOUND_STAGES = ((16, 256), (64, 0))
_BOUND_MARGIN = 1e-3


def fingerprint(y: np.ndarray, *, sr: float) -> np.ndarray:
    """The near-duplicate fingerprint of a signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,) or (channels, n)]
        Audio samples (channels are averaged, as :func:`soundclass.audio.to_mono`).
    sr : float > 0
        Sample rate of ``y``; it is resampled to :data:`FP_SR` if different.

    Returns
    -------
    np.ndarray of float32 [shape=(FP_BANDS, t)]
        Log band energies in dB, floored :data:`FP_TOP_DB` below the maximum,
        each frame's mean over the bands removed.  ``t >= 1``; silence gives zeros.
    """
    if not (isinstance(sr, (int, float, np.integer, np.floating)) and not isinstance(sr, bool) and sr > 0):
        raise ParameterError(f"sr={sr!r} must be a positive number")
    y = np.asarray(y)
    check_audio(y)
    y = to_mono(y).astype(np.float32, copy=False)
    if sr != FP_SR:
        y = resample(y, orig_sr=float(sr), target_sr=float(FP_SR))
    if y.size < FP_N_FFT:
        y = np.pad(y, (0, FP_N_FFT - y.size))
    S = melspectrogram(
        y=y, sr=FP_SR, n_fft=FP_N_FFT, hop_length=FP_HOP_LENGTH, n_mels=FP_BANDS,
        fmin=FP_FMIN, fmax=FP_FMAX, norm=None, center=True,
    )  # (FP_BANDS, t)
    peak = float(S.max())
    if not peak > 0:
        return np.zeros_like(S, dtype=np.float32)
    S_db = 10.0 * np.log10(np.maximum(S, peak * 10 ** (-FP_TOP_DB / 10)) / peak)
    # each frame's spectral shape: the loudness envelope (speech vs pause) is left out,
    # so two takes of one word by one speaker do not match on their envelope alone
    return (S_db - S_db.mean(axis=0, keepdims=True)).astype(np.float32)


def _check_fp(fp: np.ndarray, what: str) -> np.ndarray:
    fp = np.asarray(fp, dtype=np.float32)
    if fp.ndim != 2 or fp.shape[1] < 1:
        raise ParameterError(f"{what} must have shape (n_bands, t >= 1), got {fp.shape}")
    return fp


def similarity(a: np.ndarray, b: np.ndarray, *, min_overlap: float = MIN_OVERLAP) -> float:
    """Best normalised cross-correlation of two fingerprints over time lags.

    Parameters
    ----------
    a, b : np.ndarray [shape=(n_bands, t_a)], [shape=(n_bands, t_b)]
        Fingerprints from :func:`fingerprint`.
    min_overlap : float in (0, 1]
        Lags must keep at least this fraction of the shorter fingerprint.

    Returns
    -------
    float in [-1, 1]
        ``max_lag <a_overlap, b_overlap> / (|a_overlap| |b_overlap|)`` of the
        centred overlaps; 0 when either overlap is constant (silence).  The
        one-pair case of :func:`soundclass.data.lag_correlation.lag_correlations`.
    """
    a, b = _check_fp(a, "a"), _check_fp(b, "b")
    if a.shape[0] != b.shape[0]:
        raise ParameterError(f"fingerprints have {a.shape[0]} and {b.shape[0]} bands")
    if not 0 < min_overlap <= 1:
        raise ParameterError(f"min_overlap={min_overlap!r} must be in (0, 1]")
    return float(lag_correlations([a, b], [0], [1], min_overlap=min_overlap)[0])


def _profile(fp: np.ndarray) -> np.ndarray:
    """The long-term spectral shape in dB (band means minus their mean), for the pre-filter."""
    v = fp.mean(axis=1)
    return v - v.mean()


def _candidates(lengths: np.ndarray, shapes: np.ndarray, duration_tolerance: float,
                profile_tolerance_db: float) -> tuple[np.ndarray, np.ndarray]:
    """The pre-filters: pairs ``(i, j)``, ``i < j``, of clips sorted by ``lengths`` [shape=(n,)]
    within the duration tolerance and with profiles ``shapes`` [shape=(n, n_bands)] within the
    profile tolerance, sorted; in blocks of :data:`_BLOCK` clips."""
    cut = shapes.shape[1] * profile_tolerance_db**2  # squared distance = n_bands * rms**2
    first, second = [], []
    n = len(lengths)
    for start in range(0, n, _BLOCK):
        rows = slice(start, min(n, start + _BLOCK))
        # candidates j > i in sorted order with length <= length_i / (1 - tol)
        stop = int(np.searchsorted(lengths, lengths[rows.stop - 1] / max(1e-9, 1 - duration_tolerance), "right"))
        cols = slice(start, max(stop, rows.stop))
        pa, pb = shapes[rows], shapes[cols]
        sq = (pa**2).sum(1)[:, None] + (pb**2).sum(1)[None, :] - 2.0 * pa @ pb.T  # (block, cols)
        li, lj = lengths[rows][:, None], lengths[cols][None, :]
        ok = (sq <= cut) & (np.abs(lj - li) <= duration_tolerance * np.maximum(li, lj))
        ii = np.arange(rows.start, rows.stop)[:, None]
        jj = np.arange(cols.start, cols.stop)[None, :]
        ok &= jj > ii
        r, c = np.nonzero(ok)
        first.append(rows.start + r)
        second.append(cols.start + c)
    return np.concatenate(first), np.concatenate(second)


def near_duplicate_pairs(
    fingerprints: Sequence[np.ndarray],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    duration_tolerance: float = DURATION_TOLERANCE,
    profile_tolerance_db: float = PROFILE_TOLERANCE_DB,
) -> list[tuple[int, int, float]]:
    """Pairs of clips whose fingerprints are at least ``threshold`` similar.

    Parameters
    ----------
    fingerprints : sequence of np.ndarray [shape=(n_bands, t_i)]
        From :func:`fingerprint`; ``None`` entries (unreadable files) are skipped.
    threshold : float
        Similarity (see :func:`similarity`) at which a pair is flagged;
        :data:`DEFAULT_THRESHOLD` was chosen from measurements.
    duration_tolerance : float >= 0
        Only clips whose frame counts differ by at most this fraction of the
        longer are compared (a 10 % trim differs by 10 %).
    profile_tolerance_db : float >= 0
        Only clips whose long-term spectral shapes (band means in dB, centred)
        differ by at most this RMS are compared; copies measured <= 1.5 dB.

    Returns
    -------
    list of (i, j, score)
        ``i < j``, sorted by ``(i, j)``.
    """
    if not -1 <= threshold <= 1:
        raise ParameterError(f"threshold={threshold!r} must be in [-1, 1]")
    if not duration_tolerance >= 0:
        raise ParameterError(f"duration_tolerance={duration_tolerance!r} must be >= 0")
    if not profile_tolerance_db >= 0:
        raise ParameterError(f"profile_tolerance_db={profile_tolerance_db!r} must be >= 0")
    index = [i for i, fp in enumerate(fingerprints) if fp is not None]
    if len(index) < 2:
        return []
    fps = [_check_fp(fingerprints[i], f"fingerprints[{i}]") for i in index]
    if len({fp.shape[0] for fp in fps}) > 1:
        raise ParameterError("fingerprints must all have the same number of bands")
    lengths = np.array([fp.shape[1] for fp in fps], dtype=np.float64)
    order = np.argsort(lengths, kind="stable")
    by_length, sorted_lengths = [fps[i] for i in order], lengths[order]
    first, second = _candidates(sorted_lengths, np.stack([_profile(fp) for fp in by_length]),
                                duration_tolerance, profile_tolerance_db)
    for n_groups, min_frames in _BOUND_STAGES:  # rule out pairs whose score provably stays below the threshold
        use = np.flatnonzero(sorted_lengths[first] + sorted_lengths[second] >= min_frames)
        bound = lag_correlation_bounds(by_length, first[use], second[use], min_overlap=MIN_OVERLAP, n_groups=n_groups)
        keep = np.ones(first.size, dtype=bool)
        keep[use[bound < threshold - _BOUND_MARGIN]] = False
        first, second = first[keep], second[keep]
    scores = lag_correlations(by_length, first, second, min_overlap=MIN_OVERLAP)
    pairs: list[tuple[int, int, float]] = []
    for r, c, score in zip(first.tolist(), second.tolist(), scores.tolist(), strict=True):
        if score >= threshold:
            i, j = sorted((index[int(order[r])], index[int(order[c])]))
            pairs.append((i, j, score))
    return sorted(pairs)
