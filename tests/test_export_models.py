"""Waveform ONNX export of the classical models and the aiSFX models: onnxruntime == torch predict.

Each model is fitted (or briefly fine-tuned) on tiny synthetic clips, saved as
a checkpoint and exported with the default check; the graph's probabilities
are compared with ``predict_paths(..., backend='torch')`` on WAV files of
several lengths (shorter than one aiSFX block, one block, several blocks).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf
import torch
from torch import nn

from soundclass.audio import load
from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.cli import main
from soundclass.config import FeatureConfig
from soundclass.dsp.aisfx import AISFX_SR, aisfx_logmel, frames_to_blocks
from soundclass.dsp.aisfx_frontend import AisfxLogmel, cut_blocks
from soundclass.dsp.frontend import FeatureFrontend
from soundclass.errors import ExportError, ParameterError
from soundclass.extraction.extract import compute_feature
from soundclass.inference.backends import make_backend
from soundclass.inference.export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_model,
    export_onnx,
    read_metadata,
)
from soundclass.inference.predict import predict_paths
from soundclass.inference.predictor import predict_logits, predict_proba, window_starts
from soundclass.inference.waveform_graph import WindowedLogits
from soundclass.models import ModelSpec, create_model, model_spec, register_model
from soundclass.models.aisfx import AisfxEmbedding, aisfx_embedding
from soundclass.training.classical import fit_classical

CLASSES = ("hum", "sweep", "clicks")
CLASSICAL = ("logmel-logreg", "mfcc-svm", "aisfx-probe")
MODELS = CLASSICAL + ("aisfx",)
# ONNX (float32 DFT-convolution front end inside the graph) against the numpy
# features + torch model of predict: test_onnx_equals_torch_predict prints the
# largest difference, 1e-7 .. 6e-7 here (probabilities 0.01 .. 0.99)
PREDICT_ATOL = 1e-5
# seconds of the evaluation clips: shorter than one aiSFX block (100 frames,
# 2.32 s), one block, two blocks / windows, several blocks / windows
EVAL_SECONDS = (0.35, 2.33, 3.6, 6.1)


def _clip(label: int, seconds: float, sr: int, seed: int) -> np.ndarray:
    """A clip of class ``label``: a low hum, a rising sweep, or clicks; noise and level vary."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    if label == 0:
        y = np.sin(2 * np.pi * 150.0 * t) + 0.5 * np.sin(2 * np.pi * 300.0 * t)
    elif label == 1:
        y = np.sin(2 * np.pi * (800.0 + 1500.0 * t / max(seconds, 1e-9)) * t)
    else:
        y = np.zeros_like(t)
        y[rng.integers(0, t.size, size=max(int(12 * seconds), 2))] = 1.0
        y = np.convolve(y, np.hanning(64), mode="same")
    y = y + 0.05 * rng.standard_normal(t.size)
    return (rng.uniform(0.1, 0.5) * y / np.max(np.abs(y))).astype(np.float32)


def _training_clips(sr: int, *, per_class: int = 4):
    clips, labels = [], []
    for label in range(len(CLASSES)):
        for k in range(per_class):
            clips.append(_clip(label, 0.4 + 0.25 * k, sr, seed=10 * label + k))
            labels.append(label)
    return clips, np.array(labels)


def _fine_tuned_aisfx(clips, labels) -> nn.Module:
    """The aiSFX network, two Adam steps on one-block windows (backbone and head move)."""
    torch.manual_seed(0)
    model = create_model("aisfx", n_classes=len(CLASSES), n_features=96).train()
    x = torch.from_numpy(np.stack([frames_to_blocks(aisfx_logmel(y))[0].T for y in clips]))  # (N, 96, 100)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), torch.from_numpy(labels)).backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> {'dir', 'onnx', 'ckpt', 'wavs'}: a trained checkpoint, its checked export, test files."""
    root = tmp_path_factory.mktemp("export-models")
    out = {}
    for name in MODELS:
        spec = model_spec(name)
        sr = spec.feature.sr
        clips, labels = _training_clips(sr)
        if name == "aisfx":
            model, kwargs = _fine_tuned_aisfx(clips, labels), {"pretrained": False}
            clip_frames = round(spec.clip_seconds * spec.feature.frame_rate)
        else:
            feats = [compute_feature(y, spec.feature) for y in clips]
            model = fit_classical(name, feats, labels, n_classes=len(CLASSES), seed=0)
            kwargs, clip_frames = model.model_kwargs, None
        folder = save_checkpoint(root / name, model, model_name=name, model_kwargs=kwargs,
                                 feature=spec.feature, classes=CLASSES, train_config={},
                                 clip_frames=clip_frames)
        onnx_path = export_onnx(folder, root / f"{name}.onnx")  # check=True: onnxruntime vs torch
        wavs = []
        for k, seconds in enumerate(EVAL_SECONDS):
            path = root / f"{name}-{k}.wav"
            sf.write(path, _clip(k % len(CLASSES), seconds, sr, seed=100 + k), sr, subtype="FLOAT")
            wavs.append(str(path))
        out[name] = {"dir": folder, "onnx": onnx_path, "ckpt": load_checkpoint(folder), "wavs": wavs}
    return out


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _onnx_proba(run) -> np.ndarray:
    sess, sr = _session(run["onnx"]), run["ckpt"].feature.sr
    return np.concatenate([sess.run([OUTPUT_NAME], {INPUT_NAME: load(p, sr=sr)[0][None]})[0]
                           for p in run["wavs"]])


@pytest.mark.parametrize("name", MODELS)
def test_onnx_equals_torch_predict(runs, name):
    run = runs[name]
    want = predict_paths(run["dir"], run["wavs"], backend="torch", n_jobs=1, progress=False)
    assert not want.failures
    got = _onnx_proba(run)
    worst = float(np.max(np.abs(got - want.proba)))
    print(f"{name}: largest |onnx - torch predict| = {worst:.2e}")
    np.testing.assert_allclose(got, want.proba, rtol=0, atol=PREDICT_ATOL, err_msg=name)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert np.ptp(got, axis=0).max() > 1e-3  # the clips are told apart


@pytest.mark.parametrize("name", MODELS)
def test_metadata_names_the_model_and_its_windows(runs, name):
    meta = read_metadata(runs[name]["onnx"])
    spec = model_spec(name)
    assert (meta["model_name"], meta["sr"], meta["feature"]) == (name, spec.feature.sr, spec.feature)
    assert meta["classes"] == list(CLASSES)
    assert meta["min_samples"] == (8 * 256 if name == "mfcc-svm" else 1)  # 9 frames for the deltas
    assert meta["window_frames"] == (100 if name == "aisfx" else None)
    assert meta["min_frames"] == 1


def test_the_fine_tune_graph_averages_the_predictors_windows(runs):
    """Several windows: the window average differs from scoring all blocks at once, and ONNX follows it."""
    run = runs["aisfx"]
    ckpt = run["ckpt"]
    y = load(run["wavs"][-1], sr=AISFX_SR)[0]
    feature = compute_feature(y, ckpt.feature)  # (96, 263)
    assert len(window_starts(feature.shape[1], ckpt.clip_frames)) == 3
    with torch.inference_mode():
        whole = torch.softmax(ckpt.model(torch.from_numpy(feature)[None]), -1).numpy()
    windows = predict_proba(ckpt, [feature])
    assert np.max(np.abs(whole - windows)) > 1e-3  # the test tells the two apart
    got = _session(run["onnx"]).run(None, {INPUT_NAME: y[None]})[0]
    np.testing.assert_allclose(got, windows, rtol=0, atol=PREDICT_ATOL)


class _MinFrames(nn.Module):
    """A conv + max-pool logits model that refuses inputs shorter than ``min_frames``."""

    def __init__(self, min_frames: int):
        super().__init__()
        self.min_frames = min_frames
        self.net = nn.Sequential(nn.Conv1d(4, 3, 3, padding=1), nn.AdaptiveMaxPool1d(1), nn.Flatten())

    def forward(self, x):
        if x.shape[2] < self.min_frames:
            raise ValueError(f"{x.shape[2]} frames < min_frames={self.min_frames}")
        return self.net(x) + x.mean(dim=(1, 2))[:, None]  # the padding's level matters


@pytest.mark.parametrize(("clip_frames", "min_frames"), [(7, 1), (7, 4), (7, 10), (None, 5)])
def test_windowed_logits_equal_the_predictor_at_every_length(clip_frames, min_frames):
    """Windows, short clips scored whole, and pieces padded to min_frames with the row minimum."""
    torch.manual_seed(0)
    model = _MinFrames(min_frames).eval()
    windowed = WindowedLogits(model, clip_frames)
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 13, 14, 15, 22, 50):
        x = (rng.standard_normal((4, n)) + rng.uniform(-3, 3, (4, 1))).astype(np.float32)
        with torch.inference_mode():
            got = windowed(torch.from_numpy(np.stack([x, 2 * x]))).numpy()
        want = predict_logits(model, [x, 2 * x], input_kind="sequence", clip_frames=clip_frames)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f"n={n}")


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.33, 4.0])
def test_torch_aisfx_front_end_equals_numpy(seconds):
    y = _clip(1, seconds, AISFX_SR, seed=3)
    want = aisfx_logmel(y)
    with torch.inference_mode():
        got = AisfxLogmel()(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    blocks = cut_blocks(torch.from_numpy(want)[None])[0].numpy()
    np.testing.assert_array_equal(blocks, frames_to_blocks(want))
    with torch.inference_mode():
        emb = AisfxEmbedding()(torch.from_numpy(y)[None])[0].numpy()
    np.testing.assert_allclose(emb, aisfx_embedding(y, AISFX_SR), rtol=1e-4, atol=1e-4)


def test_feature_frontend_refuses_the_aisfx_kinds():
    for kind in ("aisfx", "aisfx-logmel"):
        with pytest.raises(ParameterError, match="own front end"):
            FeatureFrontend(model_spec("aisfx-probe" if kind == "aisfx" else "aisfx").feature)


@pytest.mark.parametrize("name", MODELS)
def test_auto_backend_runs_the_logits_graph(runs, name):
    run = runs[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        backend = make_backend(run["ckpt"], "auto", cache=False)
    assert backend.kind == "onnx"
    feats = [compute_feature(load(p, sr=run["ckpt"].feature.sr)[0], run["ckpt"].feature) for p in run["wavs"]]
    np.testing.assert_allclose(backend.proba(feats), make_backend(run["ckpt"], "torch").proba(feats),
                               rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- models that cannot export

UNTRACEABLE = "test-untraceable"


class CumMax(nn.Module):
    """Running maximum over time: ``aten::cummax`` has no ONNX form in torch's TorchScript exporter."""

    def __init__(self, *, n_classes, n_features):
        super().__init__()
        self.fc = nn.Linear(n_features, n_classes)

    def forward(self, x):  # (B, n_features, T)
        return self.fc(torch.cummax(x, dim=-1).values.mean(dim=-1))


@pytest.fixture
def untraceable(tmp_path):
    feature = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=8)
    register_model(UNTRACEABLE, spec=ModelSpec(feature=feature, input="sequence",
                                              description="an op ONNX export lacks"))(CumMax)
    model = create_model(UNTRACEABLE, n_classes=3, n_features=8)
    return load_checkpoint(save_checkpoint(tmp_path / "ck", model, model_name=UNTRACEABLE, model_kwargs={},
                                           feature=feature, classes=CLASSES, train_config={}))


def test_a_model_torch_cannot_trace_is_a_clear_error(untraceable, tmp_path, capfd):
    with pytest.raises(ExportError) as info:
        export_onnx(untraceable.path, tmp_path / "m.onnx")
    message = str(info.value)
    assert f"model {UNTRACEABLE!r}" in message and "cannot be exported to ONNX" in message
    assert "aten::cummax" in message and len(message) < 800
    assert not (tmp_path / "m.onnx").exists()
    assert "graph(" not in "".join(capfd.readouterr())  # the exporter's graph dump is not printed
    assert main(["export", str(untraceable.path), "-o", str(tmp_path / "m.onnx")]) == 1
    err = capfd.readouterr().err
    assert "cannot be exported to ONNX" in err and "Traceback" not in err and "graph(" not in err


def test_backends_onnx_says_why_and_auto_falls_back_silently(untraceable):
    with pytest.raises(ExportError, match=rf"model '{UNTRACEABLE}' cannot be exported to ONNX.*cummax"):
        make_backend(untraceable, "onnx", cache=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend = make_backend(untraceable, "auto", cache=False)
    assert backend.kind == "torch"
    x = np.random.default_rng(0).standard_normal((8, 20)).astype(np.float32)
    assert backend.proba([x]).shape == (1, len(CLASSES))


def test_a_model_that_does_not_take_the_front_ends_output_is_a_clear_error(tmp_path):
    feature = model_spec("logmel-logreg").feature  # 128 mel rows
    model = create_model("logmel-logreg", n_classes=3, n_features=40)
    with pytest.raises(ExportError, match=r"does not take the 'logmel' front end's output \(features of 128 rows\)"):
        export_model(model, feature, CLASSES, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_an_ensemble_of_cnns_pads_like_its_members_and_exports(tmp_path):
    """The ensemble exposes its members' min_frames, so the graphs pad short clips as the predictor does.

    The waveform graph pads the features (WindowedLogits), so it needs no waveform padding,
    and averages the checkpoint's windows."""
    from soundclass.models.ensemble import ensemble_kwargs

    kwargs = ensemble_kwargs("cnn", n_members=2, member_kwargs={"channels": [8, 16, 16, 32]}, standardize=True)
    feature = model_spec("cnn").feature
    torch.manual_seed(0)
    model = create_model("ensemble", n_classes=3, n_features=feature.n_features, **kwargs)
    assert model.min_frames == model.members[0].min_frames == 16
    folder = save_checkpoint(tmp_path / "ens", model, model_name="ensemble", model_kwargs=kwargs,
                             feature=feature, classes=CLASSES, train_config={}, clip_frames=40)
    onnx_path = export_onnx(folder, tmp_path / "ens.onnx")  # the check covers 1 sample and 2 windows
    meta = read_metadata(onnx_path)
    assert (meta["min_samples"], meta["min_frames"], meta["window_frames"]) == (1, 16, 40)
    ckpt = load_checkpoint(folder)
    clips = [_clip(k, s, feature.sr, seed=k) for k, s in enumerate((0.05, 0.6, 1.4))]
    feats = [compute_feature(y, feature) for y in clips]
    assert feats[0].shape[1] < 16 and feats[2].shape[1] > 3 * 40
    sess = _session(onnx_path)  # the waveform graph: padding to min_frames, 2 and 4 windows
    for y, x in zip(clips, feats, strict=True):
        np.testing.assert_allclose(sess.run(None, {INPUT_NAME: y[None]})[0], predict_proba(ckpt, [x]),
                                   rtol=0, atol=PREDICT_ATOL, err_msg=f"{x.shape[1]} frames")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        onnx_backend = make_backend(ckpt, "auto", cache=False)
    assert onnx_backend.kind == "onnx"
    np.testing.assert_allclose(onnx_backend.proba(feats), make_backend(ckpt, "torch").proba(feats),
                               rtol=0, atol=1e-4)
