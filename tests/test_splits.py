"""Splits: stratification, whole groups, determinism, leakage warnings."""

from __future__ import annotations

import re

import numpy as np
import pytest

from soundclass.data.dataset import Dataset, Item, assign_groups
from soundclass.data.splits import (
    group_leakage,
    groups_from_pattern,
    guess_groups,
    holdout,
    kfold,
    leakage_warning,
)
from soundclass.errors import DatasetError, ParameterError


def _labels(counts, seed=0):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return rng.permutation(y)


def _fsdd_names(n_digits=10, speakers=("jackson", "nicolas", "theo", "yweweler", "george", "lucas"), n=8):
    names, y, spk = [], [], []
    for d in range(n_digits):
        for s in speakers:
            for i in range(n):
                names.append(f"{d}_{s}_{i}.wav")
                y.append(d)
                spk.append(s)
    return names, np.array(y), spk


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5, 0.1])
def test_holdout_preserves_class_proportions(test_size):
    counts = [50, 31, 17, 9, 4, 3]
    y = _labels(counts)
    tr, te = holdout(y, test_size=test_size, seed=3)
    assert np.intersect1d(tr, te).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(y.size))
    for k, c in enumerate(counts):
        n_test = int(np.sum(y[te] == k))
        assert abs(n_test - test_size * c) <= 1, (k, n_test, test_size * c)
        assert np.sum(y[tr] == k) >= 1
    assert abs(te.size - test_size * y.size) <= 1


def test_holdout_is_deterministic_by_seed():
    y = _labels([30, 20, 10])
    a = holdout(y, seed=7)
    b = holdout(list(y), seed=7)
    c = holdout(y, seed=8)
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])
    assert a[0].dtype == np.int64 and np.all(np.diff(a[0]) > 0)


def test_holdout_string_labels():
    y = ["crunch"] * 10 + ["fizz"] * 10
    tr, te = holdout(y, test_size=0.3, seed=0)
    assert sorted(np.asarray(y)[te].tolist()) == ["crunch"] * 3 + ["fizz"] * 3


def test_tiny_classes_documented_behaviour():
    # one item: train only; two items: one each side at test_size=0.5
    y = np.array([0] * 20 + [1] + [2, 2])
    tr, te = holdout(y, test_size=0.5, seed=0)
    assert 20 in tr and 20 not in te
    assert np.sum(y[te] == 2) == 1 and np.sum(y[tr] == 2) == 1
    tr, te = holdout(y, test_size=0.2, seed=0)
    assert np.sum(y[tr] == 2) >= 1 and np.sum(y[tr] == 1) == 1


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.2"])
def test_holdout_bad_test_size(bad):
    with pytest.raises(ParameterError, match="test_size"):
        holdout([0, 1, 0, 1], test_size=bad)


def test_holdout_too_few_items():
    with pytest.raises(ParameterError, match="at least 2"):
        holdout([0])


def test_grouped_holdout_keeps_groups_whole():
    names, y, spk = _fsdd_names()
    groups = [n.rsplit("_", 1)[0] for n in names]  # digit+speaker recordings
    for seed in range(3):
        tr, te = holdout(y, test_size=0.2, groups=groups, seed=seed)
        assert group_leakage(groups, tr, te) == []
        assert set(y[tr]) == set(range(10))
        assert abs(te.size / y.size - 0.2) < 0.05
    tr2, te2 = holdout(y, test_size=0.2, groups=groups, seed=2)
    np.testing.assert_array_equal(te, te2)


def test_grouped_holdout_by_speaker():
    names, y, spk = _fsdd_names()
    tr, te = holdout(y, test_size=0.2, groups=spk, seed=0)
    assert set(np.asarray(spk)[tr]).isdisjoint(np.asarray(spk)[te])
    assert len(set(np.asarray(spk)[te])) == 1  # 1 of 6 speakers is closest to 20 %


def test_grouped_holdout_needs_two_groups():
    with pytest.raises(ParameterError, match="2 distinct groups"):
        holdout([0, 1, 0, 1], groups=["a"] * 4)
    with pytest.raises(ParameterError, match="groups has 3"):
        holdout([0, 1, 0, 1], groups=["a", "b", "c"])


def test_kfold_stratified_partition():
    y = _labels([40, 25, 12, 3])
    folds = kfold(y, n_splits=5, seed=1)
    assert len(folds) == 5
    val = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(np.sort(val), np.arange(y.size))
    for tr, va in folds:
        assert np.intersect1d(tr, va).size == 0
        assert tr.size + va.size == y.size
        for k, c in enumerate([40, 25, 12, 3]):
            assert abs(np.sum(y[va] == k) - c / 5) <= 1
    again = kfold(y, n_splits=5, seed=1)
    for (a, b), (c, d) in zip(folds, again, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_kfold_grouped():
    names, y, spk = _fsdd_names()
    folds = kfold(y, n_splits=3, groups=spk, seed=0)
    val = np.concatenate([v for _, v in folds])
    np.testing.assert_array_equal(np.sort(val), np.arange(y.size))
    for tr, va in folds:
        assert group_leakage(spk, tr, va) == []


def test_kfold_errors():
    with pytest.raises(ParameterError, match="n_splits"):
        kfold([0, 1, 0, 1], n_splits=1)
    with pytest.raises(ParameterError, match="every class"):
        kfold([0, 0, 1, 1, 2, 2], n_splits=3)
    with pytest.raises(ParameterError, match="number of groups"):
        kfold([0, 1] * 5, n_splits=3, groups=["a", "b"] * 5)


def test_guess_groups():
    names, _, _ = _fsdd_names(n=3)
    groups = guess_groups(names)
    assert groups[0] == "0_jackson"
    assert len(set(groups)) == 60
    paths = ["/d/crunch/crunch_s03_7.wav", "x/crunch_s03_8.wav", "crunch_s4_1.wav", "crunch_s4_2.wav"]
    assert guess_groups(paths) == ["crunch_s03"] * 2 + ["crunch_s4"] * 2
    assert guess_groups(paths[:2]) is None  # a single source is not a grouping
    # unique random ids: no grouping
    assert guess_groups(["24EJ22XBZ5.wav", "A8QK1L0PZ3.wav", "ZZ9PLQ2AB7.wav"]) is None
    # every file its own number: no grouping
    assert guess_groups([f"{i}.wav" for i in range(20)]) is None
    # the stem is only the class name
    names = [f"aloe_{i}.wav" for i in range(5)] + [f"burger_{i}.wav" for i in range(5)]
    labels = ["aloe"] * 5 + ["burger"] * 5
    assert guess_groups(names) is not None
    assert guess_groups(names, labels=labels) is None


def test_leakage_warned_for_random_split_not_for_grouped():
    names, y, _ = _fsdd_names()
    tr, te = holdout(y, test_size=0.2, seed=0)
    msg = leakage_warning(names, tr, te)
    assert msg is not None
    m = re.match(r"(\d+) of (\d+) sources", msg)
    assert m and int(m.group(2)) == 60 and int(m.group(1)) > 30
    assert "--group-pattern" in msg
    pattern = re.search(r"--group-pattern '([^']+)'", msg).group(1)
    # the suggested pattern works with dataset.assign_groups and removes the leak
    ds = Dataset(tuple(Item(f"/d/{n}", str(lab)) for n, lab in zip(names, y, strict=True)),
                 tuple(str(i) for i in range(10)))
    groups = assign_groups(ds, pattern).groups
    tr2, te2 = holdout(y, test_size=0.2, groups=groups, seed=0)
    assert leakage_warning(names, tr2, te2) is None
    assert leakage_warning(names, tr2, te2, groups=groups) is None


def test_leakage_with_explicit_groups_and_hashes():
    names = [f"f{i}.wav" for i in range(6)]
    msg = leakage_warning(names, [0, 1, 2], [3, 4, 5], groups=["a", "b", "c", "a", "d", "e"])
    assert msg.startswith("1 of 5 groups (e.g. 'a')")
    hashes = ["h0", "h1", "h2", "h1", "h4", "h1"]
    msg = leakage_warning(names, [0, 1, 2], [3, 4, 5], groups=list("abcdef"), hashes=hashes)
    assert msg.startswith("2 of 3 test clips (e.g. 'f3.wav') are byte-identical")
    assert leakage_warning(names, [0, 1, 2], [3, 4, 5], groups=list("abcdef"), hashes=names) is None


def test_fsdd_real_names(fsdd_dir):
    from soundclass.data.dataset import discover

    ds = discover(fsdd_dir)
    y = np.asarray(ds.targets)
    names = [it.name for it in ds.items]
    tr, te = holdout(y, test_size=0.2, seed=0)
    assert leakage_warning(names, tr, te, labels=ds.labels) is not None
    speakers = assign_groups(ds, r"^\d+_(?P<group>[a-z]+)_").groups
    tr, te = holdout(y, test_size=0.2, groups=speakers, seed=0)
    assert group_leakage(speakers, tr, te) == []
    assert leakage_warning(names, tr, te, labels=ds.labels) is None


def test_groups_from_pattern():
    names = ["/x/3_jackson_12.wav", "4_theo_0.wav"]
    assert groups_from_pattern(names, r"^\d+_(?P<group>[a-z]+)_") == ["jackson", "theo"]
    assert groups_from_pattern(["aloe_v1_3.wav"], r"^{class}_(v\d+)_", labels=["aloe"]) == ["v1"]
    with pytest.raises(DatasetError, match="does not match 1 file"):
        groups_from_pattern(names, r"^\d+_(jackson)_")
    with pytest.raises(ParameterError, match="not a valid regex"):
        groups_from_pattern(names, r"(")


def test_grouped_holdout_single_group_class_stays_in_train():
    rng = np.random.default_rng(0)
    y = np.array([0] * 40 + [1] * 40 + [2] * 5)
    groups = [f"a{i // 5}" for i in range(40)] + [f"b{i // 5}" for i in range(40)] + ["c0"] * 5
    order = rng.permutation(y.size)
    y, groups = y[order], [groups[i] for i in order]
    for seed in range(4):
        tr, te = holdout(y, test_size=0.25, groups=groups, seed=seed)
        assert np.all(y[te] != 2) and np.sum(y[tr] == 2) == 5
        assert group_leakage(groups, tr, te) == []
