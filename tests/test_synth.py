"""The built-in demo dataset: deterministic, decodable, learnable, grouped."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from soundclass.data.dataset import assign_groups, discover
from soundclass.data.synth import (
    DEMO_CLASSES,
    DEMO_GROUP_PATTERN,
    make_demo_dataset,
    synthesize_clip,
)
from soundclass.errors import ParameterError

SR = 16000


def _centroid(y: np.ndarray, sr: int) -> float:
    S = np.abs(np.fft.rfft(y)) ** 2
    f = np.fft.rfftfreq(y.size, 1.0 / sr)
    return float((S * f).sum() / S.sum())


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    return make_demo_dataset(root, n_per_class=16, sr=SR, seed=0, n_sources=4, n_corrupt=3)


def test_layout_and_groups(demo):
    assert demo.classes == DEMO_CLASSES
    good = [it for it in demo.items if "corrupt" not in it.path]
    assert len(good) == 4 * 16 and len(demo) == 4 * 16 + 3
    for it in good:
        assert it.name.startswith(f"{it.label}_s") and f"/{it.label}/" in it.path
        assert it.group == it.name.rsplit("_", 1)[0]
    assert len({it.group for it in good}) == 4 * 4
    found = discover(demo.root)
    assert found.paths == demo.paths and found.labels == demo.labels
    assert assign_groups(found, DEMO_GROUP_PATTERN).groups == demo.groups


def test_files_decodable_and_varied(demo):
    lengths = set()
    for it in demo.items:
        if "corrupt" in it.path:
            continue
        y, sr = sf.read(it.path, dtype="float32")
        assert sr == SR and y.ndim == 1
        assert 1.0 <= y.size / sr <= 3.0
        peak = np.max(np.abs(y))
        assert 0.15 < peak < 0.75
        assert np.all(np.isfinite(y))
        lengths.add(y.size)
    assert len(lengths) > 50  # random durations, not copies


def test_corrupt_files_fail_to_decode(demo):
    bad = [it.path for it in demo.items if "corrupt" in it.path]
    assert len(bad) == 3
    for path in bad:
        with pytest.raises(Exception):  # noqa: B017 - any decoder error
            sf.read(path)


def test_deterministic(tmp_path):
    a = make_demo_dataset(tmp_path / "a", n_per_class=3, sr=8000, seed=5, n_sources=2)
    b = make_demo_dataset(tmp_path / "b", n_per_class=3, sr=8000, seed=5, n_sources=2)
    c = make_demo_dataset(tmp_path / "c", n_per_class=3, sr=8000, seed=6, n_sources=2)
    for pa, pb, pc in zip(a.paths, b.paths, c.paths, strict=True):
        with open(pa, "rb") as fa, open(pb, "rb") as fb, open(pc, "rb") as fc:
            da, db, dc = fa.read(), fb.read(), fc.read()
        assert da == db
        assert da != dc
    # a clip does not depend on how many clips are made
    y = synthesize_clip("slurp", source=1, n=0, sr=8000, seed=5)
    z, _ = sf.read(next(p for p in a.paths if p.endswith("slurp_s01_000.wav")), dtype="float32")
    np.testing.assert_allclose(z, y, atol=1.0 / 32768 + 1e-7)


def test_classes_distinguishable_by_spectral_centroid(demo):
    feats = {c: [] for c in DEMO_CLASSES}
    for it in demo.items:
        if "corrupt" not in it.path:
            y, sr = sf.read(it.path)
            feats[it.label].append(np.log(_centroid(y, sr)))
    means = {c: np.mean(v) for c, v in feats.items()}
    assert means["chew"] < means["slurp"] < means["crunch"] < means["fizz"]
    for c, v in feats.items():
        assert np.std(v) > 0.01, c  # not identical clips
    # a nearest-class-mean rule on this one number is right most of the time
    centres = np.array([means[c] for c in DEMO_CLASSES])
    hits = [np.argmin(np.abs(centres - x)) == k for k, c in enumerate(DEMO_CLASSES) for x in feats[c]]
    assert np.mean(hits) > 0.85


def test_sources_have_their_own_character():
    # slurp: the sweep range is a source property -> clips of one source are
    # closer to each other than clips of different sources
    cent = np.array([[np.log(_centroid(synthesize_clip("slurp", source=s, n=n, sr=SR), SR))
                      for n in range(4)] for s in range(6)])  # (source, clip)
    within = cent.var(axis=1).mean()
    between = cent.mean(axis=1).var()
    assert within < between


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_per_class=0), "n_per_class"),
        (dict(n_sources=0), "n_sources"),
        (dict(n_corrupt=-1), "n_corrupt"),
        (dict(sr=1000), "sr"),
    ],
)
def test_bad_parameters(tmp_path, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make_demo_dataset(tmp_path / "x", **kwargs)


def test_unknown_label():
    with pytest.raises(ParameterError, match="label='burp'"):
        synthesize_clip("burp")
