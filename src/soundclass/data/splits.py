"""Train/test splits that keep class proportions and never split a source.

Clips cut from one recording (one video, one speaker, one session) are far
more alike than clips of the same class from different recordings.  A random
split that puts siblings on both sides measures how well a model recognises
*recordings*, not classes.  :func:`holdout` and :func:`kfold` therefore take
``groups`` (whole groups go to one side); :func:`guess_groups` and
:func:`leakage_warning` detect the problem from file names when no groups were
given.  Groups from a regular expression: :func:`soundclass.data.dataset.assign_groups`.

Every function is deterministic given ``seed``; indices are returned sorted.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from soundclass.data.dataset import Dataset, Item, assign_groups
from soundclass.errors import ParameterError

__all__ = [
    "holdout",
    "kfold",
    "groups_from_pattern",
    "guess_groups",
    "group_leakage",
    "leakage_warning",
]

# name = <stem><separator><counter>, e.g. "3_jackson_12" -> ("3_jackson", "_", "12"),
# or <stem ending in a letter><counter>, e.g. "clip0012" -> ("clip", "", "0012").
_COUNTER = (
    re.compile(r"^(?P<stem>.*[^\W_])(?P<sep>[_\-\s.]+)(?P<n>\d+)$"),
    re.compile(r"^(?P<stem>.*[^\W\d_])(?P<sep>)(?P<n>\d+)$"),
)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed={seed!r} must be a non-negative integer")
    return int(seed)


def _encode(y: Any) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ParameterError(f"y must be one-dimensional, got shape {arr.shape}")
    if arr.size < 2:
        raise ParameterError(f"need at least 2 items to split, got {arr.size}")
    return np.unique(arr, return_inverse=True)[1].reshape(-1)


def _encode_groups(groups: Any, n: int) -> np.ndarray:
    g = np.asarray([str(v) for v in groups])
    if g.shape != (n,):
        raise ParameterError(f"groups has {g.size} items but y has {n}")
    return np.unique(g, return_inverse=True)[1].reshape(-1)


def _check_test_size(test_size: Any) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, (float, int)) or not 0.0 < test_size < 1.0:
        raise ParameterError(f"test_size={test_size!r} must be a fraction in (0, 1)")
    return float(test_size)


def _stratified_holdout(codes: np.ndarray, test_size: float, rng: np.random.Generator):
    counts = np.bincount(codes)
    quota = test_size * counts
    n_test = np.minimum(np.floor(quota).astype(np.int64), np.maximum(counts - 1, 0))
    total = int(math.floor(test_size * codes.size + 0.5))
    total = min(max(total, 1), codes.size - 1)
    # Largest remainders get the missing items; random tie-break; never the
    # last item of a class, never more than ceil(quota).
    frac = quota - np.floor(quota)
    order = np.lexsort((rng.random(counts.size), -frac))
    for c in order:
        if n_test.sum() >= total:
            break
        if frac[c] > 0 and n_test[c] < min(math.ceil(quota[c]), counts[c] - 1):
            n_test[c] += 1
    test = []
    for c in range(counts.size):
        idx = np.flatnonzero(codes == c)
        test.append(rng.permutation(idx)[: n_test[c]])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    train_idx = np.setdiff1d(np.arange(codes.size), test_idx).astype(np.int64)
    return train_idx, test_idx


def _grouped_folds(codes: np.ndarray, gcodes: np.ndarray, n_splits: int, seed: int):
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only k members"
        return [
            (np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64))
            for tr, te in splitter.split(np.zeros(codes.size), codes, gcodes)
        ]


def holdout(
    y: Sequence[Any],
    *,
    test_size: float = 0.2,
    groups: Sequence[Any] | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """One stratified train/test split, optionally keeping groups whole.

    Parameters
    ----------
    y : sequence [shape=(n,)]
        Class labels (any hashable values).
    test_size : float in (0, 1)
        Fraction of items in the test part.
    groups : sequence [shape=(n,)], optional
        Source of each item (e.g. speaker, video). When given, every group
        lies entirely in train or entirely in test: the split is the fold of a
        shuffled ``StratifiedGroupKFold`` (``n_splits`` = floor and ceil of
        ``1 / test_size``) that keeps every class in train if possible, then
        has the test fraction closest to ``test_size``.
    seed : int
        Same seed, same split.

    Returns
    -------
    train_idx, test_idx : np.ndarray of int64
        Sorted, disjoint, together ``range(n)``.

    Notes
    -----
    Without groups each class contributes ``floor`` or ``ceil`` of
    ``test_size * count`` items (so proportions hold to +-1 per class) but
    always keeps at least one item in train: a class with a single item is in
    train only. With groups, the class proportions are only approximate
    (groups are indivisible) and a class whose items all come from one group
    cannot be on both sides.

    Raises
    ------
    ParameterError
        If ``test_size`` is not in (0, 1), there are fewer than 2 items, the
        lengths of ``y`` and ``groups`` differ, or there are fewer than 2 groups.
    """
    test_size = _check_test_size(test_size)
    seed = _check_seed(seed)
    codes = _encode(y)
    if groups is None:
        return _stratified_holdout(codes, test_size, np.random.default_rng(seed))
    gcodes = _encode_groups(groups, codes.size)
    n_groups = int(gcodes.max()) + 1
    if n_groups < 2:
        raise ParameterError("groups: need at least 2 distinct groups for a grouped split, got 1")
    ideal = 1.0 / test_size
    candidates = sorted({min(max(k, 2), n_groups) for k in (math.floor(ideal), math.ceil(ideal))})
    all_classes = set(np.unique(codes).tolist())
    best, best_key = None, None
    for n_splits in candidates:
        for i, (tr, te) in enumerate(_grouped_folds(codes, gcodes, n_splits, seed)):
            missing_train = len(all_classes - set(codes[tr].tolist()))
            missing_test = len(all_classes - set(codes[te].tolist()))
            key = (missing_train, abs(te.size / codes.size - test_size), missing_test, n_splits, i)
            if best_key is None or key < best_key:
                best, best_key = (tr, te), key
    return best


def kfold(
    y: Sequence[Any],
    *,
    n_splits: int = 5,
    groups: Sequence[Any] | None = None,
    seed: int = 0,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and optionally grouped) k-fold cross-validation indices.

    Parameters
    ----------
    y : sequence [shape=(n,)]
        Class labels.
    n_splits : int >= 2
        Number of folds.
    groups : sequence [shape=(n,)], optional
        Source of each item; a group is never in train and validation of the
        same fold (shuffled ``StratifiedGroupKFold``).
    seed : int
        Shuffling seed.

    Returns
    -------
    list of (train_idx, val_idx)
        ``n_splits`` pairs of sorted int64 arrays; the validation parts
        partition ``range(n)``.

    Notes
    -----
    A class with fewer than ``n_splits`` items (or groups) is missing from the
    validation part of some folds; it is never an error as long as one class
    is large enough.

    Raises
    ------
    ParameterError
        If ``n_splits`` is not an integer >= 2, or exceeds the number of items,
        of groups, or the size of every class.
    """
    if isinstance(n_splits, bool) or not isinstance(n_splits, (int, np.integer)) or n_splits < 2:
        raise ParameterError(f"n_splits={n_splits!r} must be an integer >= 2")
    n_splits = int(n_splits)
    seed = _check_seed(seed)
    codes = _encode(y)
    if n_splits > codes.size:
        raise ParameterError(f"n_splits={n_splits} is more than the number of items ({codes.size})")
    if groups is not None:
        gcodes = _encode_groups(groups, codes.size)
        n_groups = int(gcodes.max()) + 1
        if n_splits > n_groups:
            raise ParameterError(f"n_splits={n_splits} is more than the number of groups ({n_groups})")
        return _grouped_folds(codes, gcodes, n_splits, seed)
    counts = np.bincount(codes)
    if counts.max() < n_splits:
        raise ParameterError(
            f"n_splits={n_splits} is more than the size of every class (largest has {counts.max()})"
        )
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes smaller than n_splits
        return [
            (np.sort(tr).astype(np.int64), np.sort(te).astype(np.int64))
            for tr, te in splitter.split(np.zeros(codes.size), codes)
        ]


def _split_name(name: str) -> tuple[str, str, str]:
    """(stem, separator, extension) of a file name; stem is the name when no counter."""
    base, ext = os.path.splitext(os.path.basename(str(name)))
    for pattern in _COUNTER:
        m = pattern.match(base)
        if m is not None:
            return m.group("stem"), m.group("sep"), ext
    return base, "", ext


def groups_from_pattern(
    names: Sequence[str], pattern: str, *, labels: Sequence[Any] | None = None
) -> list[str]:
    """Groups from a regular expression on file names (:func:`soundclass.data.dataset.assign_groups`).

    Parameters
    ----------
    names : sequence of str [shape=(n,)]
        File names or paths (the pattern sees the base name).
    pattern : str
        The named group ``group``, else the first capture group, else the
        whole match is the group; ``{class}`` is replaced by the escaped label.
    labels : sequence [shape=(n,)], optional
        Labels for ``{class}``.

    Raises
    ------
    ParameterError, DatasetError
        Invalid pattern; names that do not match.
    """
    if labels is not None and len(labels) != len(names):
        raise ParameterError(f"labels has {len(labels)} items but names has {len(names)}")
    labs = [None] * len(names) if labels is None else [str(v) for v in labels]
    items = tuple(Item(str(n), lab) for n, lab in zip(names, labs, strict=True))
    return [str(g) for g in assign_groups(Dataset(items, ()), pattern).groups]


def guess_groups(
    names: Sequence[str], *, labels: Sequence[Any] | None = None
) -> list[str] | None:
    """Guess the source recording of each clip from its file name.

    The trailing counter is stripped: ``3_jackson_12.wav`` -> ``3_jackson``,
    ``crunch_s03_7.wav`` -> ``crunch_s03``. The guess is returned only when it
    looks like a real grouping: at least half of the files share their stem
    with another file and there are at least 2 stems.

    Parameters
    ----------
    names : sequence of str [shape=(n,)]
        File names or paths (only the base name is used).
    labels : sequence [shape=(n,)], optional
        Class labels; when the stems merely repeat the labels
        (``aloe_1.wav``, ``aloe_2.wav``, ...), ``None`` is returned.

    Returns
    -------
    list of str [shape=(n,)] or None
    """
    stems = [_split_name(n)[0] for n in names]
    if len(stems) < 2:
        return None
    counts = Counter(stems)
    shared = sum(c for c in counts.values() if c >= 2)
    if len(counts) < 2 or shared < 0.5 * len(stems):
        return None
    if labels is not None:
        if len(labels) != len(stems):
            raise ParameterError(f"labels has {len(labels)} items but names has {len(stems)}")
        pairs = set(zip(stems, (str(v) for v in labels), strict=True))
        if len(pairs) == len(counts) == len({p[1] for p in pairs}):
            return None  # one stem per class: the stem is the class, not a source
    return stems


def group_leakage(groups: Sequence[Any], train_idx: Any, test_idx: Any) -> list[str]:
    """The groups that have items on both sides of a split, sorted.

    Parameters
    ----------
    groups : sequence [shape=(n,)]
        Group of each item.
    train_idx, test_idx : array-like of int
        Indices into ``groups``.
    """
    g = np.asarray([str(v) for v in groups])
    tr = np.asarray(train_idx, dtype=np.int64)
    te = np.asarray(test_idx, dtype=np.int64)
    for name, idx in (("train_idx", tr), ("test_idx", te)):
        if idx.size and (idx.min() < 0 or idx.max() >= g.size):
            raise ParameterError(f"{name} has indices outside [0, {g.size})")
    return sorted(set(g[tr].tolist()) & set(g[te].tolist()))


def _pattern_example(name: str) -> str:
    _, sep, ext = _split_name(name)
    stem = "(.+)" if sep else "(.+?)"
    return f"^{stem}{re.escape(sep)}\\d+{re.escape(ext)}$"


def leakage_warning(
    names: Sequence[str],
    train_idx: Any,
    test_idx: Any,
    *,
    groups: Sequence[Any] | None = None,
    hashes: Sequence[str] | None = None,
    labels: Sequence[Any] | None = None,
) -> str | None:
    """Explain how a split leaks information from train to test, or ``None``.

    Parameters
    ----------
    names : sequence of str [shape=(n,)]
        File names or paths of the items.
    train_idx, test_idx : array-like of int
        The split.
    groups : sequence [shape=(n,)], optional
        Known sources; when ``None`` they are guessed from ``names``
        (:func:`guess_groups`).
    hashes : sequence of str [shape=(n,)], optional
        Content hashes (e.g. SHA-256 of the file bytes); test clips with a
        byte-identical copy in train are reported too.
    labels : sequence [shape=(n,)], optional
        Passed to :func:`guess_groups`.

    Returns
    -------
    str or None
        A message naming how many groups (or duplicates) leak, with an
        example, and suggesting ``--group-pattern``; ``None`` when clean.
    """
    names = [str(n) for n in names]
    te = np.asarray(test_idx, dtype=np.int64)
    messages = []
    guessed = groups is None
    if guessed:
        groups = guess_groups(names, labels=labels)
    elif len(groups) != len(names):
        raise ParameterError(f"groups has {len(groups)} items but names has {len(names)}")
    if groups is not None:
        leaked = group_leakage(groups, train_idx, test_idx)
        if leaked:
            gs = np.asarray([str(v) for v in groups])
            n_groups = len(set(gs.tolist()))
            n_clips = int(np.isin(gs[te], leaked).sum())
            example = names[int(np.flatnonzero(gs == leaked[0])[0])]
            what = "sources guessed from file names" if guessed else "groups"
            msg = (
                f"{len(leaked)} of {n_groups} {what} (e.g. {leaked[0]!r}) have clips in both "
                f"train and test ({n_clips} of {te.size} test clips); test scores will be "
                "optimistic because the model can recognise the recording instead of the class."
            )
            if guessed:
                msg += (
                    " Split by source with --group-pattern, e.g. "
                    f"--group-pattern '{_pattern_example(example)}' "
                    f"(the first capture group of the file name is the group)."
                )
            else:
                msg += " Use a grouped split (holdout/kfold with groups=...)."
            messages.append(msg)
    if hashes is not None:
        if len(hashes) != len(names):
            raise ParameterError(f"hashes has {len(hashes)} items but names has {len(names)}")
        h = np.asarray([str(v) for v in hashes])
        dup = np.isin(h[te], h[np.asarray(train_idx, dtype=np.int64)])
        if dup.any():
            example = names[int(te[np.flatnonzero(dup)[0]])]
            messages.append(
                f"{int(dup.sum())} of {te.size} test clips (e.g. {os.path.basename(example)!r}) are "
                "byte-identical to a training clip; remove the duplicates or give copies one group."
            )
    return " ".join(messages) if messages else None
