"""soundclass.extraction.extract: compute_feature equals the librosa composition; batch extraction."""

from __future__ import annotations

import os
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import librosa
import numpy as np
import pytest
import soundfile as sf

from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.extraction import extract
from soundclass.extraction.extract import ExtractResult, compute_feature, extract_file, extract_many
from soundclass.util.executors import SerialExecutor
from soundclass.util.failures import TRANSIENT


def librosa_feature(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The reference: the feature of ``config`` composed from librosa calls."""
    S = librosa.feature.melspectrogram(
        y=y, sr=config.sr, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window=config.window, center=config.center,
        pad_mode=config.pad_mode, power=config.power, n_mels=config.n_mels, fmin=config.fmin,
        fmax=config.fmax, htk=config.htk, norm=config.norm,
    )
    if config.kind == "logmel":
        S = librosa.power_to_db(S, top_db=config.top_db)
    elif config.kind == "mfcc":
        S = librosa.feature.mfcc(S=librosa.power_to_db(S, top_db=config.top_db), n_mfcc=config.n_mfcc)
    if config.deltas:
        S = np.concatenate([S] + [librosa.feature.delta(S, order=k) for k in range(1, config.deltas + 1)])
    if config.pooling == "mean":
        S = S.mean(axis=-1)
    return S


def assert_feature_close(ours: np.ndarray, ref: np.ndarray, config: FeatureConfig) -> None:
    assert ours.shape == ref.shape
    assert ours.dtype == np.float32
    if config.kind == "melspectrogram":
        assert np.abs(ours - ref).max() <= 1e-5 * np.abs(ref).max()
    else:  # dB (and DCTs of dB): absolute tolerance
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


CONFIGS = [
    FeatureConfig(),
    FeatureConfig(kind="melspectrogram", n_mels=64),
    FeatureConfig(kind="logmel", sr=16000, n_fft=512, hop_length=160, n_mels=40, fmin=20.0, fmax=7600.0, deltas=2),
    FeatureConfig(kind="mfcc", n_mfcc=13, n_mels=40, deltas=1),
    FeatureConfig(kind="mfcc", n_mfcc=20, pooling="mean", deltas=2),
    FeatureConfig(kind="logmel", sr=8000, n_fft=256, hop_length=80, n_mels=32, htk=True, norm=None, top_db=None, pooling="mean"),
    FeatureConfig(kind="logmel", sr=22050, n_fft=1024, hop_length=256, win_length=800, window="hamming", pad_mode="reflect", power=1.0),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.kind}-sr{c.sr}-d{c.deltas}-{c.pooling}")
def test_compute_feature_equals_librosa(signal, config):
    y = signal(sr=config.sr, seconds=1.5, seed=7)
    ours = compute_feature(y, config)
    expected_shape = (config.n_features,) if config.pooling == "mean" else (config.n_features, ours.shape[-1])
    assert ours.shape == expected_shape
    assert_feature_close(ours, librosa_feature(y, config), config)


def test_compute_feature_of_silence_is_finite():
    y = np.zeros(22050, dtype=np.float32)
    for kind in ("melspectrogram", "logmel", "mfcc"):
        config = FeatureConfig(kind=kind, deltas=2)
        out = compute_feature(y, config)
        assert np.all(np.isfinite(out)), kind
        assert_feature_close(out, librosa_feature(y, config), config)


def test_compute_feature_rejects_bad_input(signal):
    with pytest.raises(ParameterError, match="at least 9 frames"):
        compute_feature(signal(sr=22050, seconds=0.1), FeatureConfig(deltas=1))  # 5 frames
    with pytest.raises(ParameterError, match="1-D"):
        compute_feature(signal(sr=22050, seconds=0.1, channels=2), FeatureConfig())


def test_extract_file_equals_librosa_load_plus_feature(tmp_path, signal):
    path = tmp_path / "stereo.wav"
    sf.write(path, signal(sr=44100, seconds=2.0, channels=2), 44100, subtype="PCM_16")
    for config in (FeatureConfig(), FeatureConfig(kind="mfcc", deltas=1, max_duration=1.2)):
        y, _ = librosa.load(path, sr=config.sr, duration=config.max_duration, res_type="soxr_hq")
        assert_feature_close(extract_file(path, config), librosa_feature(y, config), config)
    short = extract_file(path, FeatureConfig(max_duration=1.2))
    assert short.shape[-1] == 1 + int(1.2 * 22050) // 512


def _clips(tmp_path, signal, n=7):
    paths = []
    for i in range(n):
        path = tmp_path / f"clip{i:02d}.wav"
        seconds = 0.5 + 0.1 * i  # different lengths: order mistakes show in the shapes
        channels = 2 if i % 2 else 1
        sf.write(path, signal(sr=16000, seconds=seconds, seed=i, channels=channels), 16000, subtype="PCM_16")
        paths.append(str(path))
    return paths


def test_extract_many_keeps_order_and_isolates_a_corrupt_file(tmp_path, signal):
    paths = _clips(tmp_path, signal)
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    paths.insert(3, str(bad))
    paths.append(str(tmp_path / "missing.wav"))
    config = FeatureConfig(n_mels=40)
    serial = extract_many(paths, config, n_jobs=1)
    pooled = extract_many(paths, config, n_jobs=2, chunksize=1)
    for results in (serial, pooled):
        assert [r.path for r in results] == paths
        assert [r.ok for r in results] == [True] * 3 + [False] + [True] * 4 + [False]
        assert "format" in results[3].error and results[3].feature is None
        assert "not found" in results[-1].error
    for a, b, path in zip(serial, pooled, paths, strict=True):
        if a.ok:
            np.testing.assert_array_equal(a.feature, b.feature)
            np.testing.assert_array_equal(a.feature, extract_file(path, config))


def test_extract_many_with_given_executors(tmp_path, signal):
    paths = _clips(tmp_path, signal, n=4)
    config = FeatureConfig(kind="mfcc", pooling="mean")
    ref = extract_many(paths, config, n_jobs=1)
    with ThreadPoolExecutor(2) as pool:
        threaded = extract_many(paths, config, executor=pool, chunksize=1)
    serial = extract_many(paths, config, executor=SerialExecutor())
    for results in (threaded, serial):
        assert [r.path for r in results] == paths
        for a, b in zip(ref, results, strict=True):
            np.testing.assert_array_equal(a.feature, b.feature)


def test_short_clip_with_deltas_is_one_error_not_a_crash(tmp_path, signal):
    paths = _clips(tmp_path, signal, n=2)
    sf.write(tmp_path / "tiny.wav", signal(sr=16000, seconds=0.05), 16000)
    results = extract_many([*paths, str(tmp_path / "tiny.wav")], FeatureConfig(deltas=1), n_jobs=1)
    assert [r.ok for r in results] == [True, True, False]
    assert "at least 9 frames" in results[-1].error


class _BrokenExecutor(Executor):
    """Every task fails, as when a worker process dies."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_exception(RuntimeError("worker died"))
        return future


def test_lost_tasks_mark_their_files_failed(tmp_path, signal):
    paths = _clips(tmp_path, signal, n=3)
    results = extract_many(paths, FeatureConfig(), executor=_BrokenExecutor())
    assert [r.path for r in results] == paths
    assert all(r.error == "worker failed: RuntimeError: worker died" for r in results)


def test_progress_bar_and_edge_cases(tmp_path, signal, capsys):
    paths = _clips(tmp_path, signal, n=2)
    results = extract_many(paths, FeatureConfig(), n_jobs=1, progress=True)
    assert all(isinstance(r, ExtractResult) and r.ok for r in results)
    assert "features (logmel): 2/2 files" in capsys.readouterr().err
    assert extract_many([], FeatureConfig()) == []
    with pytest.raises(ParameterError, match="chunksize"):
        extract_many(paths, FeatureConfig(), chunksize=0)
    with pytest.raises(ParameterError, match="n_jobs"):
        extract_many(paths, FeatureConfig(), n_jobs=0)


def test_real_recordings(fsdd_dir):
    paths = sorted(fsdd_dir.glob("*/*.wav"))[::300]
    config = FeatureConfig(kind="mfcc", deltas=2)
    results = extract_many(paths, config, n_jobs=2)
    assert all(r.ok for r in results)
    for path, result in zip(paths, results, strict=True):
        y, _ = librosa.load(path, sr=config.sr, res_type="soxr_hq")
        assert_feature_close(result.feature, librosa_feature(y, config), config)


_REAL_EXTRACT_ONE = extract._extract_one


def _extract_one_crashing(path, config):
    """``_extract_one`` that kills its worker on a file named ``crash*`` (pool workers import it
    from this module: they are not forks of the test process)."""
    if os.path.basename(path).startswith("crash"):
        os._exit(3)
    return _REAL_EXTRACT_ONE(path, config)


def test_a_crashing_worker_fails_only_its_file(tmp_path, signal, monkeypatch):
    paths = _clips(tmp_path, signal, n=6)
    crash = str(tmp_path / "crash.wav")
    os.replace(paths[3], crash)
    paths[3] = crash
    monkeypatch.setattr(extract, "_extract_one", _extract_one_crashing)
    results = extract.extract_many(paths, FeatureConfig(), n_jobs=2, chunksize=3)
    assert [r.ok for r in results] == [True, True, True, False, True, True]
    assert "worker process died" in results[3].error and results[3].kind == TRANSIENT


@pytest.mark.parametrize(("n_jobs", "pooled"), [(1, False), (None, True)])
def test_extract_many_prepares_the_backbone_before_a_pool(tmp_path, monkeypatch, n_jobs, pooled):
    """The aiSFX graph is exported in the caller before workers start (workers only load it)."""
    calls = []
    monkeypatch.setattr(extract, "prepare_backbone", lambda backbone: calls.append(backbone.name))
    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(4410, dtype=np.float32), 44100)
    config = FeatureConfig(kind="aisfx", sr=44100, n_fft=2048, hop_length=1024, n_mels=96, htk=True)
    executor = None if n_jobs == 1 else SerialExecutor()
    [res] = extract_many([path], config, n_jobs=n_jobs, executor=executor)
    assert res.ok and res.feature.shape == (512, 1)
    assert calls == (["aisfx"] if pooled else [])
    extract.prepare_workers(FeatureConfig())  # other kinds: nothing to prepare
    assert len(calls) == int(pooled)
