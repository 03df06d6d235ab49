"""data.duplicates: union-find ties of exact and near copies, and leak-proof splits."""

from __future__ import annotations

import numpy as np
import pytest

from soundclass.data.duplicates import (
    duplicate_sets,
    exact_duplicate_keys,
    near_duplicate_keys,
    tie_groups,
)
from soundclass.data.splits import group_leakage, holdout, kfold
from soundclass.errors import ParameterError


def test_exact_duplicate_keys_only_repeated_hashes():
    keys = exact_duplicate_keys(["a", "b", "a", None, "", "c", "c"])
    assert keys == ["a", None, "a", None, None, "c", "c"]


def test_tie_groups_without_groups_items_start_alone():
    labels, n_tied = tie_groups(None, [exact_duplicate_keys(["h", "x", "h", "y"])])
    assert labels.tolist() == [0, 1, 0, 2]
    assert n_tied == 1


def test_tie_groups_transitive_across_key_columns():
    groups = ["s1", "s1", "s2", "s3", None, None]
    hashes = [None, None, "h", None, "h", None]  # 2 ~ 4
    near = near_duplicate_keys([(0, 3)], n=6)  # s1 ~ s3
    labels, n_tied = tie_groups(groups, [hashes, near])
    assert labels.tolist() == [0, 0, 1, 0, 1, 2]
    assert n_tied == 2  # 5 groups (s1, s2, s3, item 4, item 5) -> 3


def test_tie_groups_nan_and_numeric_groups():
    labels, n_tied = tie_groups([1.0, np.nan, 1.0, np.nan], [[None] * 4])
    assert labels.tolist() == [0, 1, 0, 2]
    assert n_tied == 0


def test_tie_groups_counts_only_new_merges():
    # the hash repeats a tie the groups already make: nothing new is tied
    labels, n_tied = tie_groups(["g", "g", "k"], [["h", "h", None]])
    assert labels.tolist() == [0, 0, 1]
    assert n_tied == 0


def test_tie_groups_length_mismatch_and_no_size():
    with pytest.raises(ParameterError, match="same length"):
        tie_groups(["a", "b"], [["h"]])
    with pytest.raises(ParameterError, match="number of items"):
        tie_groups(None, [])
    labels, n_tied = tie_groups(None, [], n=3)
    assert labels.tolist() == [0, 1, 2] and n_tied == 0


def test_near_duplicate_keys_components_and_range():
    keys = near_duplicate_keys([(0, 2, 0.9), (2, 4, 0.8), (1, 3, 0.95)], n=6)
    assert keys[0] == keys[2] == keys[4]
    assert keys[1] == keys[3] != keys[0]
    assert keys[5] is None
    with pytest.raises(ParameterError, match="out of range"):
        near_duplicate_keys([(0, 7)], n=3)


def test_duplicate_sets():
    assert duplicate_sets(["a", None, "a", "b", "c", "b"]) == [[0, 2], [3, 5]]


def test_tied_copies_never_cross_a_split_or_fold():
    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 3
    hashes = [f"h{i}" for i in range(n)]
    for i in range(0, 40, 2):  # 20 exact copies under other names
        hashes[i + 1] = hashes[i]
    pairs = [(i, i + 50) for i in range(40, 60, 3)]  # near copies
    perm = rng.permutation(n)  # copies not adjacent in the listing
    hashes = [hashes[p] for p in perm]
    inv = np.argsort(perm)
    pairs = [(int(inv[i]), int(inv[j])) for i, j in pairs]
    labels, n_tied = tie_groups(None, [exact_duplicate_keys(hashes), near_duplicate_keys(pairs, n=n)])
    assert n_tied == 20 + len(pairs)
    copies = [(a, b) for a in range(n) for b in range(a + 1, n) if hashes[a] == hashes[b]] + pairs
    tr, te = holdout(y, test_size=0.25, groups=labels, seed=1)
    assert group_leakage(labels, tr, te) == []
    for train_idx, val_idx in [(tr, te), *kfold(y, n_splits=4, groups=labels, seed=2)]:
        side = np.full(n, -1)
        side[train_idx], side[val_idx] = 0, 1
        assert (side >= 0).all()
        assert all(side[a] == side[b] for a, b in copies)
