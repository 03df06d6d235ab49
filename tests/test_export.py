"""ONNX export of waveform -> probabilities: onnxruntime against torch, metadata, CLI."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from soundclass.checkpoint.format import save_checkpoint
from soundclass.cli import main
from soundclass.dsp.frontend import FeatureFrontend
from soundclass.errors import CheckpointError, ParameterError, SoundclassError
from soundclass.inference.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    WaveformClassifier,
    check_onnx,
    export_model,
    export_onnx,
    min_samples_for,
    read_metadata,
)
from soundclass.models import create_model, model_spec

MODELS = ("seed-cnn", "seed-lstm", "cnn")
CLASSES = ("crunch", "slurp", "fizz", "chew")


def chirp(sr: int, n: int, *, seed: int, gain: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    y = 0.3 * np.sin(2 * np.pi * (300.0 + 0.05 * sr * t) * t) + 0.05 * rng.standard_normal(n)
    return (gain * y).astype(np.float32)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (checkpoint dir, onnx path, Checkpoint-like pieces) for tiny untrained models."""
    from soundclass.checkpoint.format import load_checkpoint

    root = tmp_path_factory.mktemp("export")
    out = {}
    for i, name in enumerate(MODELS):
        spec = model_spec(name)
        torch.manual_seed(i)
        model = create_model(name, n_classes=len(CLASSES), n_features=spec.feature.n_features)
        norm_mean = norm_std = None
        if spec.standardize:
            rng = np.random.default_rng(i)
            norm_mean = rng.normal(0.0, 10.0, spec.feature.n_features).astype(np.float32)
            norm_std = rng.uniform(1.0, 30.0, spec.feature.n_features).astype(np.float32)
        ckpt_dir = save_checkpoint(
            root / name, model, model_name=name, model_kwargs={}, feature=spec.feature,
            classes=CLASSES, train_config={}, norm_mean=norm_mean, norm_std=norm_std,
        )
        onnx_path = export_onnx(ckpt_dir, root / f"{name}.onnx")  # check=True: ort vs torch inside
        ckpt = load_checkpoint(ckpt_dir)
        module = WaveformClassifier(
            ckpt.model, ckpt.feature, input_kind=ckpt.input, norm_mean=ckpt.norm_mean, norm_std=ckpt.norm_std
        )
        out[name] = {"dir": ckpt_dir, "onnx": onnx_path, "ckpt": ckpt, "module": module}
    return out


def session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def torch_proba(module, batch: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return module(torch.from_numpy(batch)).numpy()


@pytest.mark.parametrize("name", MODELS)
def test_metadata(exported, name):
    meta = read_metadata(exported[name]["onnx"])
    spec = model_spec(name)
    assert meta["classes"] == list(CLASSES)
    assert meta["sr"] == spec.feature.sr
    assert meta["feature"] == spec.feature
    assert meta["input"] == spec.input
    assert meta["model_name"] == name
    assert meta["clip_frames"] == ""  # the tiny checkpoints have no window
    assert meta["min_samples"] == exported[name]["module"].min_samples


@pytest.mark.parametrize("name", MODELS)
def test_onnx_equals_torch_on_synthetic_clips(exported, name):
    module = exported[name]["module"]
    sess = session(exported[name]["onnx"])
    sr = module.feature.sr
    lengths = [1, 100, module.feature.n_fft - 1, module.min_samples, int(0.4 * sr), int(1.7 * sr)]
    for k, n in enumerate(lengths):
        batch = np.stack([chirp(sr, n, seed=k), chirp(sr, n, seed=k + 50, gain=1e-3)])
        (got,) = sess.run([OUTPUT_NAME], {INPUT_NAME: batch})
        want = torch_proba(module, batch)
        assert got.shape == (2, len(CLASSES))
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{name}, n={n}")
    silence = np.zeros((1, sr // 2), dtype=np.float32)
    np.testing.assert_allclose(sess.run(None, {INPUT_NAME: silence})[0], torch_proba(module, silence), atol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_batch_equals_singles(exported, name):
    sess = session(exported[name]["onnx"])
    sr = exported[name]["module"].feature.sr
    batch = np.stack([chirp(sr, sr // 2, seed=s, gain=g) for s, g in ((1, 1.0), (2, 0.01), (3, 0.3))])
    together = sess.run(None, {INPUT_NAME: batch})[0]
    singles = np.concatenate([sess.run(None, {INPUT_NAME: row[None]})[0] for row in batch])
    np.testing.assert_allclose(together, singles, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_onnx_equals_inference_path(exported, name):
    """ONNX on a waveform == compute_feature + soundclass.inference.predictor.predict_proba (whole clip)."""
    from soundclass.extraction.extract import compute_feature
    from soundclass.inference.predictor import predict_proba

    ckpt = exported[name]["ckpt"]
    assert ckpt.clip_frames is None  # whole clips, as the exported graph
    sess = session(exported[name]["onnx"])
    sr = ckpt.feature.sr
    for seed, seconds in ((0, 0.6), (1, 1.3)):
        y = chirp(sr, int(seconds * sr), seed=seed)
        want = predict_proba(ckpt, [compute_feature(y, ckpt.feature)])
        got = sess.run(None, {INPUT_NAME: y[None]})[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4, err_msg=f"{name}, {seconds} s")


def _real_clips(root, sr, count):
    from soundclass.audio import load
    from soundclass.data.dataset import list_audio

    paths = sorted(list_audio(root))
    picks = [paths[i] for i in np.linspace(0, len(paths) - 1, count).astype(int)]
    return [(p, load(p, sr=sr)[0]) for p in picks]


@pytest.mark.parametrize("name", MODELS)
def test_real_fsdd_clips(exported, fsdd_dir, name):
    from soundclass.extraction.extract import compute_feature
    from soundclass.inference.predictor import predict_proba

    ckpt, module = exported[name]["ckpt"], exported[name]["module"]
    sess = session(exported[name]["onnx"])
    for path, y in _real_clips(fsdd_dir, ckpt.feature.sr, 4):  # 8 kHz resampled by audio.load
        got = sess.run(None, {INPUT_NAME: y[None]})[0]
        np.testing.assert_allclose(got, torch_proba(module, y[None]), atol=1e-4, err_msg=str(path))
        if len(y) >= module.min_samples:
            want = predict_proba(ckpt, [compute_feature(y, ckpt.feature)])
            np.testing.assert_allclose(got, want, atol=1e-4, err_msg=str(path))


@pytest.mark.parametrize("name", ["seed-lstm", "cnn"])
def test_real_donateacry_clips(exported, donateacry_dir, name):
    module = exported[name]["module"]
    sess = session(exported[name]["onnx"])
    for path, y in _real_clips(donateacry_dir, module.feature.sr, 2):
        got = sess.run(None, {INPUT_NAME: y[None]})[0]
        np.testing.assert_allclose(got, torch_proba(module, y[None]), atol=1e-4, err_msg=str(path))


def test_short_clips_are_zero_padded_to_min_samples(exported):
    module = exported["seed-lstm"]["module"]
    sr, n_min = module.feature.sr, module.min_samples
    assert n_min == 8 * 512  # 9 frames for the deltas
    short = chirp(sr, 1000, seed=7)
    padded = np.concatenate([short, np.zeros(n_min - short.size, np.float32)])
    sess = session(exported["seed-lstm"]["onnx"])
    got = sess.run(None, {INPUT_NAME: short[None]})[0]
    np.testing.assert_allclose(got, sess.run(None, {INPUT_NAME: padded[None]})[0], atol=1e-6)


def test_min_samples_for():
    cnn = model_spec("cnn").feature  # n_fft 512, hop 160
    assert min_samples_for(cnn) == 1
    assert min_samples_for(cnn, min_frames=16) == 15 * 160
    assert min_samples_for(model_spec("seed-lstm").feature) == 8 * 512
    odd = cnn.replace(n_fft=401, hop_length=100)
    assert min_samples_for(odd, min_frames=3) == 1 + 2 * 100
    assert min_samples_for(cnn.replace(center=False), min_frames=2) == 512 + 160
    assert min_samples_for(cnn.replace(pad_mode="reflect")) == 257
    # the formula gives exactly min_frames frames, one sample less gives fewer
    for feature, frames in ((cnn, 16), (odd, 3), (cnn.replace(center=False), 2)):
        n = min_samples_for(feature, min_frames=frames)
        frontend = FeatureFrontend(feature)
        assert frontend(torch.zeros(1, n)).shape[-1] == frames
        if feature.center:
            assert frontend(torch.zeros(1, n - 1)).shape[-1] == frames - 1


def test_check_detects_a_different_graph(exported, tmp_path):
    name = "cnn"
    other = WaveformClassifier(
        create_model(name, n_classes=len(CLASSES), n_features=64), model_spec(name).feature
    )
    sr = other.feature.sr
    with pytest.raises(SoundclassError, match="differ by"):
        check_onnx(other, exported[name]["onnx"], [chirp(sr, sr, seed=0)[None]])


def test_export_model_in_memory_and_errors(tmp_path):
    spec = model_spec("cnn")
    model = create_model("cnn", n_classes=3, n_features=spec.feature.n_features)
    with pytest.raises(ParameterError, match="3 outputs but 2 classes"):
        export_model(model, spec.feature, ["a", "b"], tmp_path / "x.onnx", check=False)
    with pytest.raises(ParameterError, match="opset=9 must be an integer in 13"):
        export_model(model, spec.feature, ["a", "b", "c"], tmp_path / "x.onnx", opset=9)
    with pytest.raises(ParameterError, match="opset=99"):
        export_model(model, spec.feature, ["a", "b", "c"], tmp_path / "x.onnx", opset=99)
    with pytest.raises(ParameterError, match="pooling"):
        WaveformClassifier(model, spec.feature, input_kind="vector")
    with pytest.raises(ParameterError, match=r"norm_mean has shape \(3,\)"):
        WaveformClassifier(model, spec.feature, norm_mean=np.zeros(3), norm_std=np.ones(3))
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(CheckpointError):
        export_onnx(tmp_path / "no-such-checkpoint", tmp_path / "y.onnx")
    (tmp_path / "not.onnx").write_bytes(b"not a model")
    with pytest.raises(SoundclassError, match="not.onnx"):
        read_metadata(tmp_path / "not.onnx")


def test_cli_export(exported, tmp_path, capsys):
    out = tmp_path / "sub" / "model.onnx"
    assert main(["export", str(exported["cnn"]["dir"]), "-o", str(out), "--no-check", "--opset", "17"]) == 0
    assert out.is_file()
    printed = capsys.readouterr().out
    assert "16000 Hz" in printed and "crunch, slurp, fizz, chew" in printed
    assert read_metadata(out)["classes"] == list(CLASSES)
    assert main(["export", str(tmp_path / "missing"), "-o", str(tmp_path / "m.onnx")]) == 1
    assert "no checkpoint here" in capsys.readouterr().err
