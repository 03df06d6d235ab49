"""soundclass.dsp.features: equal to librosa within explicit tolerances, fast paths included."""

from __future__ import annotations

import librosa
import numpy as np
import pytest

from helpers import assert_batch_consistent
from soundclass.audio import load
from soundclass.dsp import stft as stft_mod
from soundclass.dsp.features import (
    amplitude_to_db,
    delta,
    melspectrogram,
    mfcc,
    power_to_db,
    spectrogram,
    stft,
)
from soundclass.errors import AudioDecodeError, ParameterError

STFT_COMBOS = [
    dict(),
    dict(n_fft=512, hop_length=128),
    dict(n_fft=1024, hop_length=256, win_length=800, pad_mode="reflect"),
    dict(n_fft=400, hop_length=160, window="hamming"),
    dict(n_fft=256, hop_length=100, center=False),
    dict(n_fft=2048, hop_length=None, win_length=1024, window=("kaiser", 8.0)),
]


def _close_to_max(ours, ref, rtol):
    """max |ours - ref| <= rtol * max |ref|."""
    assert ours.shape == ref.shape
    err = np.abs(ours - ref).max()
    assert err <= rtol * max(np.abs(ref).max(), np.finfo(np.float32).tiny), err


@pytest.mark.parametrize("kwargs", STFT_COMBOS, ids=str)
def test_stft_and_spectrogram_match_librosa(signal, kwargs):
    y = signal(sr=16000, seconds=0.7)
    ours, ref = stft(y, **kwargs), librosa.stft(y, **kwargs)
    assert ours.dtype == ref.dtype == np.complex64
    _close_to_max(ours, ref, 1e-5)
    for power in (1.0, 2.0, 1.5):
        S = spectrogram(y, power=power, **kwargs)
        assert S.dtype == np.float32
        _close_to_max(S, np.abs(ref) ** power, 1e-5)


def test_stft_frame_count_and_layout(signal):
    y = signal(sr=8000, seconds=1.0)
    D = stft(y, n_fft=256, hop_length=64)
    assert D.shape == (129, 1 + (8000 + 2 * 128 - 256) // 64)
    assert D.flags.c_contiguous
    # frame t is centred at sample t * hop_length: an impulse there is flat in magnitude
    impulse = np.zeros(2048, dtype=np.float32)
    impulse[64 * 10] = 1.0
    mag = np.abs(stft(impulse, n_fft=256, hop_length=64, window="boxcar"))
    np.testing.assert_allclose(mag[:, 10], 1.0, rtol=1e-6)


@pytest.mark.parametrize("kw", STFT_COMBOS)
def test_frame_count_and_params_agree_with_stft(kw):
    y = np.random.default_rng(0).standard_normal(3001).astype(np.float32)
    n_fft, hop, win = stft_mod.check_stft_params(
        n_fft=kw.get("n_fft", 2048), hop_length=kw.get("hop_length"), win_length=kw.get("win_length"))
    assert (hop, win) == (kw.get("hop_length") or win // 4, kw.get("win_length") or n_fft)
    t = stft_mod.frame_count(y.size, n_fft=n_fft, hop_length=hop, center=kw.get("center", True))
    assert stft(y, **kw).shape == (1 + n_fft // 2, t)
    assert librosa.stft(y, **kw).shape[-1] == t


def test_stft_in_blocks_equals_one_block(signal, monkeypatch):
    y = signal(sr=8000, seconds=2.0)
    whole = stft(y, n_fft=256, hop_length=64)
    monkeypatch.setattr(stft_mod, "MAX_BLOCK_BYTES", 256 * 4 * 7)  # 7 frames per block
    np.testing.assert_array_equal(stft(y, n_fft=256, hop_length=64), whole)
    mel_blocks = melspectrogram(y=y, sr=8000, n_fft=256, hop_length=64, n_mels=32)
    monkeypatch.setattr(stft_mod, "MAX_BLOCK_BYTES", 2**30)
    np.testing.assert_allclose(
        mel_blocks, melspectrogram(y=y, sr=8000, n_fft=256, hop_length=64, n_mels=32), rtol=1e-6
    )


def test_float64_input_stays_float64(signal):
    y = signal(sr=8000, seconds=0.5).astype(np.float64)
    D = stft(y, n_fft=256)
    assert D.dtype == np.complex128
    _close_to_max(D, librosa.stft(y, n_fft=256), 1e-12)
    M = melspectrogram(y=y, sr=8000, n_fft=256, n_mels=20)
    assert M.dtype == np.float64
    _close_to_max(M, librosa.feature.melspectrogram(y=y, sr=8000, n_fft=256, n_mels=20), 1e-10)


MEL_COMBOS = [
    dict(sr=22050),
    dict(sr=22050, n_fft=1024, hop_length=256, n_mels=64, htk=True),
    dict(sr=16000, n_fft=512, hop_length=160, n_mels=40, fmin=20.0, fmax=7600.0, norm=None),
    dict(sr=8000, n_fft=256, hop_length=80, n_mels=32, power=1.0),
    dict(sr=44100, n_fft=2048, hop_length=441, win_length=1764, n_mels=96, pad_mode="reflect"),
]


@pytest.mark.parametrize("kwargs", MEL_COMBOS, ids=str)
def test_melspectrogram_and_logmel_match_librosa(signal, kwargs):
    y = signal(sr=kwargs["sr"], seconds=1.3, seed=3)
    ours = melspectrogram(y=y, **kwargs)
    ref = librosa.feature.melspectrogram(y=y, **kwargs)
    assert ours.dtype == ref.dtype == np.float32
    _close_to_max(ours, ref, 1e-5)
    db_err = np.abs(power_to_db(ours) - librosa.power_to_db(ref)).max()
    assert db_err <= 1e-3
    # from a precomputed spectrogram
    n_fft = kwargs.get("n_fft", 2048)
    S = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=kwargs.get("hop_length", 512))) ** 2
    mel_kw = {k: kwargs[k] for k in ("n_mels", "fmin", "fmax", "htk", "norm") if k in kwargs}
    _close_to_max(
        melspectrogram(S=S, sr=kwargs["sr"], **mel_kw),
        librosa.feature.melspectrogram(S=S, sr=kwargs["sr"], **mel_kw),
        1e-6,
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(n_mfcc=13, n_mels=40, dct_type=2, lifter=22),
        dict(n_mfcc=20, dct_type=3, norm=None),
        dict(n_mfcc=12, dct_type=1, norm=None, htk=True, n_mels=64),
        dict(n_mfcc=30, hop_length=256, mel_norm=None, top_db=None),
    ],
    ids=str,
)
def test_mfcc_matches_librosa(signal, kwargs):
    y = signal(sr=22050, seconds=1.0, seed=5)
    ref_kwargs = dict(kwargs)
    top_db = ref_kwargs.pop("top_db", 80.0)
    ours = mfcc(y=y, sr=22050, **kwargs)
    if top_db == 80.0:
        ref = librosa.feature.mfcc(y=y, sr=22050, **ref_kwargs)
    else:  # librosa.feature.mfcc has no top_db: build its log-mel the same way
        mel_kw = {k: v for k, v in ref_kwargs.items() if k in ("hop_length",)}
        S = librosa.power_to_db(
            librosa.feature.melspectrogram(y=y, sr=22050, norm=ref_kwargs.get("mel_norm"), **mel_kw),
            top_db=top_db,
        )
        ref = librosa.feature.mfcc(S=S, n_mfcc=kwargs["n_mfcc"])
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3 * max(1.0, np.abs(ref).max() / 100))
    S = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=22050))
    np.testing.assert_allclose(mfcc(S=S, n_mfcc=13), librosa.feature.mfcc(S=S, n_mfcc=13), atol=1e-4)


def test_power_and_amplitude_to_db_match_librosa():
    rng = np.random.default_rng(0)
    S = rng.exponential(size=(16, 50)).astype(np.float32) * 10.0 ** rng.uniform(-14, 2, size=(16, 50))
    for kwargs in (dict(), dict(ref=np.max), dict(top_db=None), dict(amin=1e-6, top_db=40.0), dict(ref=3.0)):
        np.testing.assert_allclose(power_to_db(S, **kwargs), librosa.power_to_db(S, **kwargs), atol=1e-4)
        A = np.sqrt(S)
        np.testing.assert_allclose(
            amplitude_to_db(A, **kwargs), librosa.amplitude_to_db(A, **kwargs), atol=1e-4
        )
    assert power_to_db(np.float32(100.0)) == pytest.approx(20.0)
    np.testing.assert_allclose(power_to_db(np.array([1.0, 1e-12]), top_db=None), [0.0, -100.0])


@pytest.mark.parametrize("kwargs", [dict(), dict(order=2), dict(width=5), dict(width=3, order=2, mode="nearest")], ids=str)
def test_delta_matches_librosa(kwargs):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 40)).astype(np.float32)
    np.testing.assert_allclose(delta(X, **kwargs), librosa.feature.delta(X, **kwargs), atol=1e-6)
    np.testing.assert_allclose(delta(X, axis=0, width=5), librosa.feature.delta(X, axis=0, width=5), atol=1e-6)
    ramp = np.tile(np.arange(20, dtype=np.float64), (3, 1))  # slope 1 everywhere
    np.testing.assert_allclose(delta(ramp), 1.0, atol=1e-9)
    np.testing.assert_allclose(delta(ramp, order=2), 0.0, atol=1e-9)


def test_silent_input_gives_finite_features():
    y = np.zeros(22050, dtype=np.float32)
    M = melspectrogram(y=y)
    assert np.all(M == 0)
    L = power_to_db(M)
    np.testing.assert_allclose(L, -100.0, atol=1e-4)
    C = mfcc(y=y)
    assert np.all(np.isfinite(C))
    np.testing.assert_allclose(C, librosa.feature.mfcc(y=y), atol=1e-3)
    assert np.all(np.isfinite(delta(C)))


def test_input_shorter_than_n_fft(signal):
    y = signal(sr=22050, seconds=0.02)  # 441 samples < n_fft = 2048
    with pytest.warns(UserWarning, match="too large"):
        ours = melspectrogram(y=y)
    with pytest.warns(UserWarning):
        ref = librosa.feature.melspectrogram(y=y)
    assert ours.shape == ref.shape == (128, 1)
    _close_to_max(ours, ref, 1e-5)


def test_batch_equals_stacked_singles(signal):
    ys = np.stack([signal(sr=8000, seconds=0.5, seed=s) for s in range(6)]).reshape(2, 3, -1)
    kwargs = dict(n_fft=256, hop_length=64)
    D = stft(ys, **kwargs)
    assert D.shape[:2] == (2, 3)
    M = melspectrogram(y=ys, sr=8000, n_mels=24, **kwargs)
    assert_batch_consistent(lambda y: stft(y, **kwargs), ys, batch_ndim=2)  # bit-identical
    assert_batch_consistent(lambda y: melspectrogram(y=y, sr=8000, n_mels=24, **kwargs), ys,
                            batch_ndim=2, rtol=1e-6)
    assert_batch_consistent(
        lambda y: mfcc(y=y, sr=8000, n_mels=24, n_mfcc=10, top_db=None, **kwargs), ys,
        batch_ndim=2, atol=1e-4)
    _close_to_max(M, librosa.feature.melspectrogram(y=ys, sr=8000, n_mels=24, **kwargs), 1e-5)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda y: stft(y, hop_length=0), "hop_length=0"),
        (lambda y: stft(y, n_fft=0), "n_fft=0"),
        (lambda y: stft(y, n_fft=256, win_length=512), "win_length=512"),
        (lambda y: stft(y[:100], n_fft=256, center=False), "too large"),
        (lambda y: stft(y, pad_mode="wrap"), "pad_mode"),
        (lambda y: stft(y, window="no-such-window"), "window"),
        (lambda y: stft(y, n_fft=8, window=np.ones(5)), "length 5"),
        (lambda y: stft(y.astype(np.int16)), "floating-point"),
        (lambda y: spectrogram(y, power=0), "power=0"),
        (lambda y: melspectrogram(), "needs either"),
        (lambda y: melspectrogram(S=np.ones(5)), "shape"),
        (lambda y: melspectrogram(y=y, n_mels=0), "n_mels=0"),
        (lambda y: mfcc(y=y, lifter=-1), "lifter"),
        (lambda y: mfcc(y=y, dct_type=4), "dct_type"),
        (lambda y: mfcc(y=y, n_mfcc=200), "n_mfcc=200"),
        (lambda y: power_to_db(y, amin=0), "amin"),
        (lambda y: power_to_db(y, top_db=-1), "top_db"),
        (lambda y: delta(np.ones((4, 5))), "cannot exceed"),
        (lambda y: delta(np.ones((4, 50)), width=4), "odd integer"),
        (lambda y: delta(np.ones((4, 50)), order=0), "order=0"),
    ],
)
def test_bad_parameters(signal, call, match):
    with pytest.raises(ParameterError, match=match):
        call(signal(sr=8000, seconds=0.5))


def test_non_finite_signal_is_rejected(signal):
    y = signal(sr=8000, seconds=0.1)
    y[5] = np.nan
    with pytest.raises(AudioDecodeError, match="non-finite"):
        melspectrogram(y=y)


def test_logmel_on_real_recordings(fsdd_dir, donateacry_dir):
    paths = sorted(fsdd_dir.glob("*/*.wav"))[::500] + sorted(donateacry_dir.glob("*/*.wav"))[::100]
    for path in paths:
        y, sr = load(path, sr=22050)
        for kwargs in (dict(), dict(n_fft=512, hop_length=128, n_mels=40)):
            ours = power_to_db(melspectrogram(y=y, sr=sr, **kwargs))
            ref = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr, **kwargs))
            assert np.abs(ours - ref).max() <= 1e-3, path
