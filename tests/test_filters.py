"""soundclass.dsp.filters: mel scale and filterbank equal to librosa, plus properties."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.sparse

from soundclass.dsp.filters import (
    fft_frequencies,
    hz_to_mel,
    mel,
    mel_frequencies,
    mel_sparse,
    mel_to_hz,
)
from soundclass.errors import ParameterError

FREQS = np.array([0.0, 20.0, 440.0, 999.9, 1000.0, 1000.1, 4000.0, 11025.0, 20000.0])


@pytest.mark.parametrize("htk", [False, True])
def test_scale_conversions_match_librosa(htk):
    np.testing.assert_allclose(hz_to_mel(FREQS, htk=htk), librosa.hz_to_mel(FREQS, htk=htk), rtol=1e-12)
    mels = np.linspace(0, 60, 13)
    np.testing.assert_allclose(mel_to_hz(mels, htk=htk), librosa.mel_to_hz(mels, htk=htk), rtol=1e-12)
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(FREQS, htk=htk), htk=htk), FREQS, rtol=1e-10, atol=1e-9)
    for f in (300.0, 2500.0):  # scalars stay scalars
        out = hz_to_mel(f, htk=htk)
        assert np.ndim(out) == 0
        assert out == pytest.approx(librosa.hz_to_mel(f, htk=htk))


def test_known_values():
    assert hz_to_mel(1000.0) == pytest.approx(15.0)  # Slaney: 1 kHz is mel 15, linear below
    assert hz_to_mel(200.0) == pytest.approx(3.0)
    assert hz_to_mel(1000.0, htk=True) == pytest.approx(1000.0, abs=0.05)  # HTK: 1 kHz ~ 1000 mel
    assert mel_to_hz(15.0) == pytest.approx(1000.0)


def test_frequencies():
    np.testing.assert_array_equal(fft_frequencies(sr=8000, n_fft=8), [0, 1000, 2000, 3000, 4000])
    np.testing.assert_allclose(
        mel_frequencies(40, fmin=30, fmax=7000, htk=True),
        librosa.mel_frequencies(40, fmin=30, fmax=7000, htk=True),
        rtol=1e-12,
    )
    f = mel_frequencies(10, fmin=100, fmax=5000)
    assert f[0] == pytest.approx(100) and f[-1] == pytest.approx(5000)
    assert np.all(np.diff(f) > 0)


COMBOS = [
    dict(sr=22050, n_fft=2048),
    dict(sr=22050, n_fft=2048, n_mels=64, htk=True),
    dict(sr=16000, n_fft=512, n_mels=40, fmin=20.0, fmax=7600.0, norm=None),
    dict(sr=8000, n_fft=256, n_mels=32, htk=True, norm=None),
    dict(sr=44100, n_fft=1024, n_mels=96, fmin=50.0, fmax=16000.0),
    dict(sr=32000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0, dtype=np.float64),
]


@pytest.mark.parametrize("kwargs", COMBOS, ids=str)
def test_mel_matches_librosa(kwargs):
    ours = mel(**kwargs)
    ref = librosa.filters.mel(**kwargs)
    assert ours.shape == ref.shape == (kwargs.get("n_mels", 128), 1 + kwargs["n_fft"] // 2)
    assert ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-6 * ref.max())
    sparse = mel_sparse(**kwargs)
    assert isinstance(sparse, scipy.sparse.csr_array)
    np.testing.assert_array_equal(sparse.toarray(), ours)


def test_filterbank_properties():
    sr, n_fft, n_mels = 22050, 2048, 40
    fb = mel(sr=sr, n_fft=n_fft, n_mels=n_mels, norm=None)
    assert np.all(fb >= 0)
    assert np.all(fb.max(axis=1) > 0)  # no empty band
    assert np.all(fb.max(axis=1) <= 1.0 + 1e-6)  # unnormalised triangles peak at <= 1
    # each triangle peaks at the bin nearest to its mel centre frequency
    centres = mel_frequencies(n_mels + 2, fmax=sr / 2)[1:-1]
    bins = fft_frequencies(sr=sr, n_fft=n_fft)
    peak_freqs = bins[fb.argmax(axis=1)]
    assert np.all(np.abs(peak_freqs - centres) <= sr / n_fft)
    # slaney normalisation: every triangle has the same area (~ 2 / bandwidth * bandwidth / 2 = 1 per Hz)
    area = mel(sr=sr, n_fft=n_fft, n_mels=n_mels).sum(axis=1) * (sr / n_fft)
    np.testing.assert_allclose(area[5:], 1.0, rtol=0.05)


def test_mel_is_cached_and_read_only():
    a = mel(sr=16000, n_fft=512, n_mels=40)
    assert a is mel(sr=16000, n_fft=512, n_mels=40)
    with pytest.raises(ValueError):
        a[0, 0] = 1.0


def test_empty_filters_warn():
    with pytest.warns(UserWarning, match="Empty filters"):
        mel(sr=8000, n_fft=64, n_mels=128)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(sr=0, n_fft=512), "sr=0"),
        (dict(sr=8000, n_fft=0), "n_fft=0"),
        (dict(sr=8000, n_fft=512, n_mels=0), "n_mels=0"),
        (dict(sr=8000, n_fft=512, fmin=5000.0), "fmin=5000"),
        (dict(sr=8000, n_fft=512, fmin=-1.0), "fmin=-1"),
        (dict(sr=8000, n_fft=512, norm="l2"), "norm='l2'"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        mel(**kwargs)
