"""Inference backends: onnxruntime gives torch's probabilities; chunked, streamed predict_paths."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import make_signal
from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.errors import ParameterError, SoundclassError
from soundclass.extraction.extract import compute_feature
from soundclass.inference import backends
from soundclass.inference.backends import ONNX_ATOL, Backend, make_backend
from soundclass.inference.predict import predict_paths, use_backend
from soundclass.models import create_model, model_spec

CLASSES = ("a", "b", "c")


def _checkpoint(root, name="cnn", clip_frames=120, **model_kwargs):
    spec = model_spec(name)
    torch.manual_seed(0)
    model = create_model(name, n_classes=len(CLASSES), n_features=spec.feature.n_features, **model_kwargs)
    rng = np.random.default_rng(0)
    mean = std = None
    if spec.standardize:
        mean = rng.normal(-40.0, 5.0, spec.feature.n_features).astype(np.float32)
        std = rng.uniform(5.0, 20.0, spec.feature.n_features).astype(np.float32)
    folder = save_checkpoint(
        root / name, model, model_name=name, model_kwargs=model_kwargs, feature=spec.feature,
        classes=CLASSES, train_config={}, norm_mean=mean, norm_std=std,
        clip_frames=clip_frames if spec.input == "sequence" else None,
    )
    return load_checkpoint(folder)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return _checkpoint(tmp_path_factory.mktemp("backends"), channels=(8, 16, 16, 32))


def _features(ckpt, seconds, seed=0):
    sr = ckpt.feature.sr
    return [compute_feature(make_signal(sr, s, seed=seed + k), ckpt.feature) for k, s in enumerate(seconds)]


def test_onnx_equals_torch_on_generated_clips(cnn):
    feats = _features(cnn, [0.05, 0.4, 1.19, 1.2, 2.7, 0.4, 3.3])  # shorter than min_frames .. several windows
    assert min(f.shape[1] for f in feats) < cnn.model.min_frames
    assert max(f.shape[1] for f in feats) > 2 * cnn.clip_frames
    onnx, torch_ = make_backend(cnn, "onnx"), make_backend(cnn, "torch")
    assert (onnx.kind, torch_.kind) == ("onnx", "torch")
    for tta in (1, 2):
        got, want = onnx.proba(feats, tta=tta), torch_.proba(feats, tta=tta)
        assert got.shape == (len(feats), len(CLASSES))
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, want, rtol=0, atol=ONNX_ATOL)
        assert not np.allclose(want[0], want[1], atol=1e-3)  # the clips are told apart


def test_onnx_batch_equals_singles(cnn):
    feats = _features(cnn, [0.7, 0.7, 1.5, 0.3, 0.7], seed=5)
    backend = make_backend(cnn, "onnx")
    together = backend.proba(feats, batch_size=8)
    singles = np.concatenate([backend.proba([f]) for f in feats])
    np.testing.assert_allclose(together, singles, rtol=0, atol=1e-5)


def test_onnx_graph_cached_next_to_checkpoint(tmp_path):
    ckpt = _checkpoint(tmp_path, channels=(8, 8, 16, 16))
    make_backend(ckpt, "onnx")
    (graph,) = (ckpt.path / "onnx").glob("logits-*.onnx")
    stamp = graph.stat().st_mtime_ns
    feats = _features(ckpt, [0.6])
    again = make_backend(ckpt.path.parent / "cnn", "onnx")  # from the folder: reuses the file
    assert graph.stat().st_mtime_ns == stamp and again.kind == "onnx"
    np.testing.assert_allclose(again.proba(feats), make_backend(ckpt, "torch").proba(feats), atol=ONNX_ATOL)
    graph.write_bytes(b"not onnx")  # a corrupt cache entry is an error, not a wrong answer
    with pytest.raises(SoundclassError, match="onnxruntime cannot run"):
        make_backend(ckpt, "onnx")
    with pytest.warns(UserWarning, match="using torch"):
        assert make_backend(ckpt, "auto").kind == "torch"


@pytest.mark.parametrize("name", ["seed-lstm", "seed-cnn"])
def test_onnx_other_models(tmp_path, name):
    ckpt = _checkpoint(tmp_path, name=name)
    feats = _features(ckpt, [0.5, 1.3, 0.5])
    np.testing.assert_allclose(make_backend(ckpt, "onnx").proba(feats),
                               make_backend(ckpt, "torch").proba(feats), rtol=0, atol=ONNX_ATOL)


def test_auto_falls_back_to_torch_when_export_fails(cnn, monkeypatch):
    def broken(*args, **kwargs):
        raise SoundclassError("ONNX export of the model failed (test)")

    monkeypatch.setattr(backends, "export_logits_onnx", broken)
    with pytest.raises(SoundclassError, match="export"):
        make_backend(cnn, "onnx", cache=False)
    with pytest.warns(UserWarning, match="using torch"):
        assert make_backend(cnn, "auto", cache=False).kind == "torch"
    with pytest.raises(ParameterError, match="backend='tensorrt'"):
        make_backend(cnn, "tensorrt")


def test_proba_waveforms_equals_features(cnn):
    backend = make_backend(cnn, "torch")
    ys = [make_signal(cnn.feature.sr, s, seed=3) for s in (0.5, 1.6)]
    feats = [compute_feature(y, cnn.feature) for y in ys]
    np.testing.assert_allclose(backend.proba_waveforms(ys), backend.proba(feats), rtol=1e-6, atol=1e-7)


def _wavs(folder, seconds, sr=16000):
    paths = []
    for k, s in enumerate(seconds):
        path = folder / f"clip_{k:02d}.wav"
        sf.write(path, make_signal(sr, s, seed=k), sr, subtype="PCM_16")
        paths.append(str(path))
    return paths


def test_predict_paths_chunks_give_the_same_result(cnn, tmp_path):
    paths = _wavs(tmp_path, [0.4, 1.3, 0.2, 2.6, 0.9])
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEnot really")
    paths.insert(2, str(bad))
    backend = make_backend(cnn, "torch")
    whole = predict_paths(backend, paths, n_jobs=1, progress=False)
    chunked = predict_paths(backend, paths, n_jobs=1, progress=False, chunk_size=2, batch_size=3)
    assert list(chunked.failures) == [str(bad)] and list(whole.failures) == [str(bad)]
    np.testing.assert_allclose(chunked.proba, whole.proba, rtol=1e-5, atol=1e-6)
    assert np.isnan(chunked.proba[2]).all() and np.isfinite(np.delete(chunked.proba, 2, axis=0)).all()
    with use_backend("torch"):  # the path form goes through make_backend with the context's kind
        by_path = predict_paths(cnn.path, paths, n_jobs=1, progress=False, chunk_size=4)
    np.testing.assert_allclose(by_path.proba, whole.proba, rtol=1e-5, atol=1e-6)
    with pytest.raises(ParameterError, match="backend='gpu'"):
        with use_backend("gpu"):
            pass


def test_real_fsdd_clips(cnn, fsdd_dir):
    """onnxruntime == torch on spoken digits (8 kHz files resampled to the model's 16 kHz)."""
    from soundclass.data.dataset import list_audio

    paths = sorted(list_audio(fsdd_dir))
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, 24).astype(int)]
    onnx = predict_paths(cnn, picks, n_jobs=1, progress=False, backend="onnx")
    ref = predict_paths(cnn, picks, n_jobs=1, progress=False, backend="torch")
    assert not onnx.failures
    np.testing.assert_allclose(onnx.proba, ref.proba, rtol=0, atol=ONNX_ATOL)


def test_backend_is_small_interface(cnn):
    backend = make_backend(cnn, "torch")
    assert isinstance(backend, Backend) and backend.classes == CLASSES
    assert backend.logits.min_frames == cnn.model.min_frames
    assert "torch" in repr(backend)
