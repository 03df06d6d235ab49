"""The torch frontend against librosa (float64: exact to rounding; float32: stated tolerances)."""

from __future__ import annotations

import warnings

import librosa
import numpy as np
import pytest
import scipy.fft
import torch

from conftest import make_signal
from helpers import assert_batch_consistent
from soundclass.config import FeatureConfig
from soundclass.dsp.frontend import (
    DCT,
    Delta,
    FeatureFrontend,
    PowerToDB,
    Spectrogram,
    dct_matrix,
    delta_operator,
    dft_kernel,
)
from soundclass.errors import ParameterError

CONFIGS = {
    # FSDD-like: 8 kHz spoken digits
    "fsdd-8k": FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=40),
    # default-model-like: 16 kHz log-mel
    "default-16k": FeatureConfig(sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=50.0, fmax=8000.0),
    # seed configs: librosa defaults at 22.05 kHz, with deltas
    "seed-mfcc-d2-mean": FeatureConfig(kind="mfcc", n_mfcc=40, deltas=2, pooling="mean"),
    "seed-logmel-d1": FeatureConfig(kind="logmel", deltas=1),
    # PANNs: 32 kHz, fmin 50, fmax 14000, no top_db
    "panns-32k": FeatureConfig(
        sr=32000, n_fft=1024, hop_length=320, n_mels=64, fmin=50.0, fmax=14000.0, top_db=None
    ),
    "mel-power1-win": FeatureConfig(
        kind="melspectrogram", sr=16000, n_fft=512, win_length=400, hop_length=160, power=1.0,
        n_mels=40, htk=True, norm=None,
    ),
    "mfcc-reflect": FeatureConfig(kind="mfcc", sr=16000, n_fft=400, hop_length=100, n_mels=32, pad_mode="reflect"),
}


def librosa_feature(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The reference: librosa calls spelled out from the FeatureConfig docs."""
    c = config
    S = librosa.feature.melspectrogram(
        y=y, sr=c.sr, n_fft=c.n_fft, hop_length=c.hop_length, win_length=c.win_length,
        window=c.window, center=c.center, pad_mode=c.pad_mode, power=c.power,
        n_mels=c.n_mels, fmin=c.fmin, fmax=c.fmax, htk=c.htk, norm=c.norm,
    )
    if c.kind != "melspectrogram":
        S = librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db=c.top_db)
    if c.kind == "mfcc":
        S = scipy.fft.dct(S, axis=-2, type=2, norm="ortho")[: c.n_mfcc]
    parts = [S] + [librosa.feature.delta(S, width=9, order=o) for o in range(1, c.deltas + 1)]
    S = np.concatenate(parts, axis=0)
    return S.mean(axis=-1) if c.pooling == "mean" else S


def run(frontend: FeatureFrontend, y: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return frontend(torch.from_numpy(y)[None])[0].numpy()


def tone(sr: int, seconds: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return 0.5 * np.sin(2 * np.pi * freq * t)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float64_equals_librosa(name):
    config = CONFIGS[name]
    y = make_signal(sr=config.sr, seconds=0.6, seed=1).astype(np.float64)
    ref = librosa_feature(y, config)
    out = run(FeatureFrontend(config, dtype=torch.float64), y)
    assert out.shape == ref.shape
    assert out.shape[0] == config.n_features
    if config.kind == "melspectrogram":
        np.testing.assert_allclose(out, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())
    else:  # dB domain (and linear maps of it): 1e-3 dB
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", ["fsdd-8k", "seed-mfcc-d2-mean", "panns-32k", "mel-power1-win"])
def test_float32_tolerance_noisy_chirp(name):
    """float32 on a chirp + noise (no bin near the floor): within 1e-3 dB / 1e-5 of the peak."""
    config = CONFIGS[name]
    y = make_signal(sr=config.sr, seconds=0.6, seed=2)
    ref = librosa_feature(y.astype(np.float64), config)
    out = run(FeatureFrontend(config), y)
    assert out.dtype == np.float32
    if config.kind == "melspectrogram":
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    else:
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3 * max(1.0, np.abs(ref).max() / 100))


def test_float32_tolerance_near_floor():
    """A pure tone puts most bins ~80 dB below the peak: float32 stays within 0.05 dB above
    peak - 60 dB and within 3 dB all the way down to the top_db floor."""
    config = FeatureConfig(sr=16000, n_fft=512, hop_length=160, n_mels=64)
    y = tone(config.sr, 0.5)
    ref = librosa_feature(y, config)
    out = run(FeatureFrontend(config), y.astype(np.float32))
    loud = ref > ref.max() - 60.0
    assert np.abs(out - ref)[loud].max() < 0.05
    assert np.abs(out - ref).max() < 3.0


def test_silence_is_finite():
    for config in (CONFIGS["fsdd-8k"], CONFIGS["seed-mfcc-d2-mean"], CONFIGS["panns-32k"]):
        out = run(FeatureFrontend(config), np.zeros(config.sr // 2, dtype=np.float32))
        assert np.isfinite(out).all()
    out = run(FeatureFrontend(CONFIGS["fsdd-8k"]), np.zeros(4000, dtype=np.float32))
    np.testing.assert_allclose(out, -100.0)  # 10 * log10(amin)


@pytest.mark.parametrize("name", ["fsdd-8k", "seed-mfcc-d2-mean", "seed-logmel-d1", "panns-32k"])
def test_batch_equals_stacked_singles(name):
    config = CONFIGS[name]
    frontend = FeatureFrontend(config)
    # different loudness per example: the top_db floor must be per example
    ys = [make_signal(sr=config.sr, seconds=0.5, seed=s) * g for s, g in ((0, 1.0), (1, 1e-3), (2, 0.1))]
    batch = torch.from_numpy(np.stack(ys))
    with torch.no_grad():
        assert_batch_consistent(frontend, batch, rtol=1e-5, atol=1e-4, keepdim=True)


@pytest.mark.parametrize("n", [1, 100, 255, 256, 300])
def test_signals_shorter_than_n_fft(n):
    config = CONFIGS["fsdd-8k"]  # n_fft = 256
    y = make_signal(sr=config.sr, seconds=1.0, seed=3)[:n].astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # librosa warns that n_fft is too large
        ref = librosa_feature(y, config)
    out = run(FeatureFrontend(config, dtype=torch.float64), y)
    assert out.shape == ref.shape == (config.n_mels, 1 + n // config.hop_length)
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-3)


def test_center_false():
    config = FeatureConfig(sr=8000, n_fft=256, hop_length=100, n_mels=20, center=False)
    y = make_signal(sr=8000, seconds=0.3, seed=4).astype(np.float64)
    out = run(FeatureFrontend(config, dtype=torch.float64), y)
    np.testing.assert_allclose(out, librosa_feature(y, config), rtol=0, atol=1e-3)
    with pytest.raises(ParameterError, match="n_fft=256 is too large"):
        run(FeatureFrontend(config), y[:200].astype(np.float32))


def test_dft_kernel_is_windowed_rfft():
    rng = np.random.default_rng(0)
    frame = rng.standard_normal(64)
    kernel = dft_kernel(n_fft=64, win_length=50, window="hann")
    assert kernel.shape == (2 * 33, 64)
    w = librosa.util.pad_center(librosa.filters.get_window("hann", 50, fftbins=True), size=64)
    spec = np.fft.rfft(w * frame)
    np.testing.assert_allclose(kernel[:33] @ frame, spec.real, atol=1e-12)
    np.testing.assert_allclose(kernel[33:] @ frame, spec.imag, atol=1e-12)
    assert np.all(kernel[:, :7] == 0) and np.all(kernel[:, 57:] == 0)  # window centred


def test_dct_matrix_matches_scipy():
    rng = np.random.default_rng(0)
    S = rng.standard_normal((40, 7))
    D = dct_matrix(n_mels=40, n_mfcc=13)
    np.testing.assert_allclose(D @ S, scipy.fft.dct(S, axis=0, norm="ortho")[:13], atol=1e-12)
    np.testing.assert_allclose(D @ D.T, np.eye(13), atol=1e-12)  # orthonormal rows
    dct = DCT(n_mels=40, n_mfcc=13, dtype=torch.float64)
    np.testing.assert_allclose(dct(torch.from_numpy(S)[None])[0].numpy(), D @ S, atol=1e-12)


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("t", [9, 10, 13, 17, 64])
def test_delta_equals_librosa_for_any_length(order, t):
    rng = np.random.default_rng(t)
    x = rng.standard_normal((3, 5, t))
    delta = Delta(5, order=order, dtype=torch.float64)
    out = delta(torch.from_numpy(x)).numpy()
    ref = librosa.feature.delta(x, width=9, order=order, axis=-1, mode="interp")
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10)


def test_delta_operator_properties():
    left, kernel, right = delta_operator(order=1)
    assert left.shape == right.shape == (4, 9) and kernel.shape == (9,)
    np.testing.assert_allclose(kernel, np.arange(-4, 5) / 60.0, atol=1e-12)  # the textbook delta
    ramp = np.arange(9.0)  # slope 1 everywhere, also at the edges
    np.testing.assert_allclose(left @ ramp, 1.0, atol=1e-12)
    np.testing.assert_allclose(right @ ramp, 1.0, atol=1e-12)
    left2, kernel2, right2 = delta_operator(order=2)
    parabola = np.arange(9.0) ** 2  # second derivative 2
    for op in (left2, right2, kernel2[None]):
        np.testing.assert_allclose(op @ parabola, 2.0, atol=1e-10)


def test_delta_needs_width_frames():
    with pytest.raises(ParameterError, match="at least width=9 frames, got 8"):
        Delta(4, order=1)(torch.zeros(1, 4, 8))


def test_power_to_db_matches_librosa():
    rng = np.random.default_rng(0)
    S = rng.uniform(0, 1, size=(2, 6, 5)) ** 8  # spans many decades
    S[0, 0, 0] = 0.0
    for top_db in (None, 80.0, 20.0):
        out = PowerToDB(top_db=top_db)(torch.from_numpy(S)).numpy()
        ref = np.stack([librosa.power_to_db(s, ref=1.0, amin=1e-10, top_db=top_db) for s in S])
        np.testing.assert_allclose(out, ref, atol=1e-9)


def test_bad_parameters():
    with pytest.raises(ParameterError, match="pad_mode='wrap'"):
        FeatureFrontend(FeatureConfig(pad_mode="wrap"))
    with pytest.raises(ParameterError, match="hop_length=0"):
        Spectrogram(hop_length=0)
    with pytest.raises(ParameterError, match="waveforms must have shape"):
        FeatureFrontend(CONFIGS["fsdd-8k"])(torch.zeros(3, 2, 100))
    with pytest.raises(ParameterError, match="order=0"):
        delta_operator(order=0)
    with pytest.raises(ParameterError, match="FeatureConfig"):
        FeatureFrontend({"sr": 8000})


def test_fsdd_clips_match_librosa(fsdd_dir):
    import soundfile as sf

    config = CONFIGS["fsdd-8k"].replace(kind="mfcc", n_mfcc=20, deltas=1)
    frontend = FeatureFrontend(config, dtype=torch.float64)
    paths = sorted(fsdd_dir.rglob("*.wav"))[::500][:6]
    assert paths
    for path in paths:
        y, sr = sf.read(path, dtype="float64")
        assert sr == config.sr, path
        y = y if y.ndim == 1 else y.mean(axis=1)
        if 1 + len(y) // config.hop_length < 9:
            continue
        np.testing.assert_allclose(run(frontend, y), librosa_feature(y, config), rtol=0, atol=1e-3, err_msg=str(path))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_float32_equals_compute_feature(name):
    """The contract: FeatureFrontend == soundclass.extraction.extract.compute_feature, both in float32."""
    from soundclass.extraction.extract import compute_feature

    config = CONFIGS[name]
    y = make_signal(sr=config.sr, seconds=0.8, seed=5)
    ref = compute_feature(y, config)
    out = run(FeatureFrontend(config), y)
    assert out.shape == ref.shape and out.dtype == ref.dtype == np.float32
    if config.kind == "melspectrogram":
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())
    else:
        np.testing.assert_allclose(out, ref, rtol=0, atol=2e-3)


def test_fsdd_float32_equals_compute_feature(fsdd_dir):
    """Real 8 kHz digits resampled by audio.load, default-model feature (logmel, top_db 80)."""
    from soundclass.audio import load
    from soundclass.extraction.extract import compute_feature

    config = FeatureConfig(sr=16000, n_fft=512, hop_length=160, n_mels=64, fmin=20.0)
    frontend = FeatureFrontend(config)
    for path in sorted(fsdd_dir.rglob("*.wav"))[::700][:5]:
        y, _ = load(path, sr=config.sr)
        np.testing.assert_allclose(run(frontend, y), compute_feature(y, config), rtol=0, atol=2e-3, err_msg=str(path))
