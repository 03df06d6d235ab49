"""data.fingerprint: near copies (re-encoded, gain, trim, resampled) are tied; distinct clips are not."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile as sf

from soundclass.audio import resample
from soundclass.data.duplicates import near_duplicate_keys, tie_groups
from soundclass.data.fingerprint import (
    DEFAULT_THRESHOLD,
    FP_BANDS,
    fingerprint,
    near_duplicate_pairs,
    similarity,
)
from soundclass.data.synth import DEMO_CLASSES, synthesize_clip
from soundclass.errors import ParameterError

SR = 16000


def _roundtrip(y: np.ndarray, fmt: str, subtype: str) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, y, SR, format=fmt, subtype=subtype)
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0]


def _copies(y: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    n = y.size
    copies = {
        "ogg": (_roundtrip(y, "OGG", "VORBIS"), SR),
        "gain x0.3": (0.3 * y, SR),
        "trim 10% start": (y[n // 10 :], SR),
        "trim 10% end": (y[: n - n // 10], SR),
        "44.1k -> 16k": (resample(resample(y, orig_sr=SR, target_sr=44100), orig_sr=44100, target_sr=16000), 16000),
    }
    if "MP3" in sf.available_formats():  # libsndfile >= 1.1
        copies["mp3"] = (_roundtrip(y, "MP3", "MPEG_LAYER_III"), SR)
        copies["mp3+trim+gain"] = (0.3 * _roundtrip(y[n // 10 :], "MP3", "MPEG_LAYER_III"), SR)
    return copies


@pytest.fixture(scope="module")
def corpus():
    """Base clips of every synthetic class, their copies, and distinct clips of the same classes."""
    items, base_of = [], []
    for label in DEMO_CLASSES:
        for source in range(2):
            y = synthesize_clip(label, source=source, n=0, sr=SR, seed=0)
            base = len(items)
            items.append(("base", label, fingerprint(y, sr=SR)))
            base_of.append(base)
            for kind, (z, sr) in _copies(y).items():
                items.append((kind, label, fingerprint(z, sr=sr)))
                base_of.append(base)
        for source, seed in [(5, 0), (0, 1), (2, 2)]:  # other recordings and seeds
            items.append(("distinct", label, fingerprint(synthesize_clip(label, source=source, n=0, sr=SR, seed=seed), sr=SR)))
            base_of.append(len(items) - 1)
    return items, np.array(base_of)


def test_copies_score_above_and_distinct_clips_below_the_threshold(corpus):
    items, base_of = corpus
    same = [similarity(items[b][2], items[i][2]) for i, b in enumerate(base_of) if b != i]
    distinct = [
        similarity(items[i][2], items[j][2])
        for i, j in itertools.combinations(range(len(items)), 2)
        if items[i][1] == items[j][1] and base_of[i] == i and base_of[j] == j
    ]
    # measured (issue 10): copies >= 0.845, distinct clips of one class <= 0.77 (with lags unbounded
    # by duration); the threshold sits between them
    assert min(same) >= DEFAULT_THRESHOLD, min(same)
    assert max(distinct) < DEFAULT_THRESHOLD - 0.03, max(distinct)


def test_near_duplicate_pairs_tie_exactly_the_copies(corpus):
    items, base_of = corpus
    pairs = near_duplicate_pairs([fp for _, _, fp in items])
    assert all(i < j and score >= DEFAULT_THRESHOLD for i, j, score in pairs)
    labels, n_tied = tie_groups(None, [near_duplicate_keys(pairs, n=len(items))])
    # every copy in its base clip's group, and no two base clips share one
    for i, b in enumerate(base_of):
        assert labels[i] == labels[b], items[i][:2]
    assert len(set(labels)) == len(set(base_of.tolist()))
    assert n_tied == len(items) - len(set(base_of.tolist()))


def test_fingerprint_properties():
    y = synthesize_clip("chew", source=0, n=0, sr=SR, seed=0)
    fp = fingerprint(y, sr=SR)
    assert fp.dtype == np.float32 and fp.shape[0] == FP_BANDS and fp.shape[1] > 10
    np.testing.assert_allclose(fingerprint(0.3 * y, sr=SR), fp, atol=1e-3)  # gain-free
    assert similarity(fp, fp) == pytest.approx(1.0)
    assert np.allclose(fingerprint(np.zeros(SR, dtype=np.float32), sr=SR), 0.0)  # silence
    assert similarity(fingerprint(np.zeros(SR, dtype=np.float32), sr=SR), fp) == 0.0
    assert fingerprint(y[:100], sr=SR).shape[1] >= 1  # shorter than one frame
    stereo = np.stack([y, y])  # (channels, n)
    np.testing.assert_allclose(fingerprint(stereo, sr=SR), fp, atol=1e-4)


def test_duration_prefilter_and_none_entries():
    y = synthesize_clip("crunch", source=0, n=0, sr=SR, seed=0)
    fps = [fingerprint(y, sr=SR), None, fingerprint(y[: y.size // 2], sr=SR), fingerprint(0.5 * y, sr=SR)]
    pairs = near_duplicate_pairs(fps)
    assert [(i, j) for i, j, _ in pairs] == [(0, 3)]  # the half-length clip is not compared
    assert near_duplicate_pairs(fps, duration_tolerance=0.6)[0][:2] == (0, 2)


def test_errors():
    with pytest.raises(ParameterError, match="sr"):
        fingerprint(np.zeros(100, dtype=np.float32), sr=0)
    with pytest.raises(ParameterError, match="bands"):
        similarity(np.zeros((4, 10)), np.zeros((5, 10)))
    with pytest.raises(ParameterError, match="threshold"):
        near_duplicate_pairs([], threshold=2.0)
