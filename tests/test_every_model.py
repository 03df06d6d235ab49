"""Issue #8: ``predict``, ``evaluate``, ``serve`` and ``export`` work for every registered model, and agree.

Every built-in model (the ensembles through ``train --folds 2`` of ``cnn`` and
``seed-cnn``) is trained for one epoch on a tiny synthetic dataset (16 clips
of 1-3 s at 8 kHz) with a training window of 0.25 s (``aisfx`` keeps its
one-block window), so the test clips are several windows long.  The PANNs
variants keep their layout (kernel, convolutions per block, pooling, hence
``min_frames``) at a few channels per block.  Then, against
``predict_paths(backend='torch')``:

- ``soundclass predict --proba`` (``--backend auto``: the onnxruntime features-to-logits graph);
- ``evaluate_checkpoint`` (its ``predictions.csv``);
- the serve app's ``POST /api/predict`` (Starlette's TestClient, in process);
- the exported waveform graph in onnxruntime, calibrated with the metadata's
  temperature, on clips shorter than the model's ``min_frames``, shorter than
  the window, one window, one window and a frame, and 3.5 windows long.
"""

from __future__ import annotations

import csv
import warnings

import numpy as np
import onnxruntime as ort
import pytest
import soundfile as sf

from helpers import builtin_models
from soundclass.audio import load
from soundclass.checkpoint.format import load_checkpoint
from soundclass.cli import main
from soundclass.data.dataset import Dataset
from soundclass.data.synth import DEMO_GROUP_PATTERN, make_demo_dataset
from soundclass.evaluation.evaluate import evaluate_checkpoint
from soundclass.extraction.extract import compute_feature
from soundclass.inference.backends import make_backend
from soundclass.inference.calibration import calibrate_proba, softmax
from soundclass.inference.export import INPUT_NAME, OUTPUT_NAME, export_onnx, read_metadata
from soundclass.inference.predict import predict_paths
from soundclass.inference.predictor import predict_logits
from soundclass.training import TrainConfig, train

MODELS = builtin_models()
# The clips here are longer than the 0.25 s window, so training pads nothing and every model
# is trained with bucket=False: short clips are scored padded to one window, as trained.
# "cnn:bucketed" trains with length-bucketed batches: short clips are scored whole.
VARIANTS = {"cnn:bucketed": {"bucket": True}}
FOLDS_OF = {"ensemble": "cnn", "ensemble-vector": "seed-cnn"}  # trained as `train --folds 2`
# TrainConfig overrides: the PANNs layouts at a few channels per block, and a learning rate
# that moves them in their one step (the fine-tuning default, 1e-4 after a warm-up, leaves
# them uniform; cnn14's deep stack still spreads its probabilities by only ~3e-4, 30x the
# tolerances below)
_FAST = {"lr": 1e-2, "scheduler": "none"}
TINY = {
    "cnn6": {"model_kwargs": {"channels": [8, 8, 16, 16]}, **_FAST},
    "cnn10": {"model_kwargs": {"channels": [8, 8, 16, 16]}, **_FAST},
    "cnn14": {"model_kwargs": {"channels": [4, 8, 8, 16, 16, 32]}, **_FAST},
}
CLIP_SECONDS = 0.25
# kinds with 1 + n // hop_length frames (the embeddings have blocks or one column; the
# Whisper log-mel drops its last frame and pads clips under 0.1 s)
SPECTRAL_KINDS = ("melspectrogram", "logmel", "mfcc", "aisfx-logmel")
# the graph's float32 front end against the numpy features of predict, then the
# temperature (which divides log p, so it scales differences by up to 1 / T)
ONNX_ATOL = 1e-5
CSV_ATOL = 2e-6  # the CSVs keep 6 decimals
SAME_ATOL = 1e-5  # onnxruntime features-to-logits graph (auto) against torch


def _label_frames(ckpt) -> dict[str, int]:
    """Test clip lengths in frames, by what they exercise."""
    window = ckpt.clip_frames or 25
    low = 9 if ckpt.feature.deltas else 2  # deltas need 9 frames (compute_feature refuses fewer)
    return {
        "tiny": low,  # fewer frames than the PANNs models' min_frames
        "short": max(window // 2 + 1, low),
        "window": window,
        "window+1": window + 1,
        "long": 3 * window + window // 2,
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=4, sr=8000, n_sources=2, seed=0)


@pytest.fixture(scope="module", params=[*MODELS, *VARIANTS])
def run(request, demo, tmp_path_factory):
    """One model trained briefly, its test files and the torch ``predict`` of all of them."""
    variant = request.param
    name = variant.split(":")[0]
    root = tmp_path_factory.mktemp(variant.replace(":", "-"))
    model = FOLDS_OF.get(name, name)
    config = TrainConfig(
        model=model, n_jobs=1, epochs=1, val_size=4, group_pattern=DEMO_GROUP_PATTERN,
        cache_dir=str(root / "cache"), clip_seconds=None if model == "aisfx" else CLIP_SECONDS,
        folds=2 if name in FOLDS_OF else 0, **TINY.get(model, {}), **VARIANTS.get(variant, {}),
    )
    res = train(demo, config, out_dir=root / "run", progress=False)
    assert not res.failures
    ckpt = load_checkpoint(res.checkpoint_dir)
    assert ckpt.model_name == name
    feature, sr = ckpt.feature, ckpt.feature.sr
    frames, wavs = _label_frames(ckpt), {}
    for k, (what, f) in enumerate(frames.items()):  # cut from demo clips, at the model's rate
        y = load(demo.paths[(5 * k) % len(demo.paths)], sr=sr)[0]
        n = (f - 1) * feature.hop_length + feature.hop_length // 2  # center=True: 1 + n // hop frames
        y = np.tile(y, n // y.size + 1)[:n]
        wavs[what] = str(root / f"{what}.wav")
        sf.write(wavs[what], y, sr, subtype="FLOAT")
        if ckpt.input == "sequence" and feature.kind in SPECTRAL_KINDS:  # not embeddings nor Whisper's t
            assert compute_feature(y, feature).shape[1] == f
    picked = _one_per_class(demo)
    paths = list(picked.paths) + list(wavs.values())
    torch_pred = predict_paths(res.checkpoint_dir, paths, backend="torch", n_jobs=1, progress=False)
    assert not torch_pred.failures
    return {"name": name, "variant": variant, "dir": res.checkpoint_dir, "ckpt": ckpt, "wavs": wavs,
            "frames": frames,
            "paths": paths, "torch": torch_pred, "root": root, "labelled": picked}


def _one_per_class(demo: Dataset) -> Dataset:
    """The first clip of every class: what ``predict``, ``evaluate`` and ``serve`` are compared on."""
    items = tuple(next(it for it in demo.items if it.label == c) for c in demo.classes)
    return Dataset(items=items, classes=demo.classes, root=demo.root)


def _assert_same_labels(proba, want, classes, where):
    """Same top class wherever the top two of ``want`` are not (nearly) tied."""
    top2 = np.sort(want, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3
    np.testing.assert_array_equal(np.argmax(proba, 1)[clear], np.argmax(want, 1)[clear], err_msg=where)


def test_predict_cli_auto_backend_agrees_with_torch(run, tmp_path):
    """``soundclass predict --proba`` (``--backend auto``: onnxruntime, every model exports) == torch."""
    want = run["torch"].proba
    print(f"{run['name']}: spread of the probabilities {np.ptp(want, axis=0).max():.2e}")
    assert np.ptp(want, axis=0).max() > 1e-4  # the model tells the clips apart (10x the tolerances)
    out = tmp_path / "sub.csv"
    assert main(["predict", str(run["dir"]), *run["paths"], "-o", str(out), "--proba", "--quiet",
                 "--jobs", "1"]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback to torch
        assert make_backend(run["ckpt"], "auto").kind == "onnx"  # the graph the CLI cached
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    classes = run["ckpt"].classes
    assert [r["name"] for r in rows] == [p.rsplit("/", 1)[-1] for p in run["paths"]]
    got = np.array([[float(r[f"proba_{c}"]) for c in classes] for r in rows])
    np.testing.assert_allclose(got, want, rtol=0, atol=SAME_ATOL + CSV_ATOL, err_msg=run["name"])
    labels = np.array([classes.index(r["label"]) for r in rows])
    _assert_same_labels(np.eye(len(classes))[labels], want, classes, run["name"])


def test_evaluate_agrees_with_predict(run, tmp_path):
    labelled = run["labelled"]
    ev = evaluate_checkpoint(run["dir"], labelled, out_dir=tmp_path / "eval", n_jobs=1, progress=False)
    rows = list(csv.DictReader(ev.files["predictions"].open(encoding="utf-8")))
    classes = run["ckpt"].classes
    assert [r["path"] for r in rows] == list(labelled.paths)
    got = np.array([[float(r[f"proba_{c}"]) for c in classes] for r in rows])
    want = run["torch"].proba[: len(labelled)]
    np.testing.assert_allclose(got, want, rtol=0, atol=SAME_ATOL + CSV_ATOL, err_msg=run["name"])
    predicted = np.array([classes.index(r["predicted"]) for r in rows])
    _assert_same_labels(np.eye(len(classes))[predicted], want, classes, run["name"])
    true = np.array([classes.index(r["true"]) for r in rows])
    assert ev.metrics["accuracy"] == pytest.approx(float(np.mean(true == predicted)))


def test_serve_predict_endpoint_agrees_with_predict(run):
    from soundclass.apps.serve import App, create_asgi_app, load_predictor

    with warnings.catch_warnings():  # Starlette suggests httpx2 over httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    classes = run["ckpt"].classes
    picks = [0, run["paths"].index(run["wavs"]["long"])]  # an 8 kHz clip (resampled), a long one
    app = App(load_predictor(run["dir"]))
    with TestClient(create_asgi_app(app), base_url="http://127.0.0.1:8000") as client:
        info = client.get("/api/info").json()
        assert info["model"] == run["name"] and info["classes"] == list(classes)
        for i in picks:
            with open(run["paths"][i], "rb") as fh:
                answer = client.post("/api/predict", content=fh.read(), headers={"Content-Type": "audio/wav"})
            assert answer.status_code == 200, answer.text
            top = answer.json()["top"]
            got = np.array([next(t["p"] for t in top if t["label"] == c) for c in classes])
            np.testing.assert_allclose(got, run["torch"].proba[i], rtol=0, atol=SAME_ATOL,
                                       err_msg=f"{run['name']}: {run['paths'][i]}")


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_exported_graph_equals_predict_at_every_length(run):
    """The waveform graph scores the pieces ``predict`` scores: windows, short clips, min_frames padding."""
    ckpt, name = run["ckpt"], run["name"]
    # check=False: this test compares onnxruntime with predict itself (the check, onnxruntime
    # against the traced torch module, is tested in test_export*.py)
    onnx_path = export_onnx(run["dir"], run["root"] / "model.onnx", check=False)
    meta = read_metadata(onnx_path)
    assert meta["model_name"] == name
    windowed = ckpt.input == "sequence" and ckpt.clip_frames is not None
    assert meta["window_frames"] == (ckpt.clip_frames if windowed else None)
    assert meta["min_frames"] == (max(getattr(ckpt.model, "min_frames", 1), 1) if ckpt.input == "sequence" else 1)
    sess, sr, temperature = _session(onnx_path), ckpt.feature.sr, float(meta["temperature"])
    worst = 0.0
    for what, path in run["wavs"].items():
        y = load(path, sr=sr)[0]
        got = calibrate_proba(sess.run([OUTPUT_NAME], {INPUT_NAME: y[None]})[0], temperature=temperature)
        want = run["torch"].proba[run["paths"].index(path)][None]
        worst = max(worst, float(np.max(np.abs(got - want))))
        np.testing.assert_allclose(got, want, rtol=0, atol=ONNX_ATOL, err_msg=f"{name}: {what} clip")
    print(f"{name}: largest |onnx - torch predict| = {worst:.2e} (temperature {temperature:.3g})")
    if windowed:  # the long clip's window average is not the whole clip's score: the test tells them apart
        x = compute_feature(load(run["wavs"]["long"], sr=sr)[0], ckpt.feature)
        kw = {"input_kind": "sequence", "norm_mean": ckpt.norm_mean, "norm_std": ckpt.norm_std}
        whole = softmax(predict_logits(ckpt.model, [x], clip_frames=None, **kw))
        windows = softmax(predict_logits(ckpt.model, [x], clip_frames=ckpt.clip_frames, **kw))
        assert np.max(np.abs(whole - windows)) > 10 * ONNX_ATOL, name


def test_every_builtin_model_is_covered():
    assert set(MODELS) >= {"cnn", "cnn6", "cnn10", "cnn14", "cnn-wide", "seed-cnn", "seed-lstm", "mfcc-svm",
                           "logmel-logreg", "aisfx-probe", "aisfx", "whisper-probe", "whisper",
                           "fusion-probe", "ensemble", "ensemble-vector"}


def test_short_clips_are_scored_as_the_model_was_trained(run):
    """Padded to one window after training on padded windows, whole after bucketed training."""
    from soundclass.inference.calibration import apply_checkpoint_calibration
    from soundclass.inference.predictor import pads_short_clips, predict_proba

    ckpt = run["ckpt"]
    if ckpt.input != "sequence" or ckpt.clip_frames is None:
        assert not pads_short_clips(ckpt)
        return
    bucketed = ckpt.train_config.get("bucket")
    assert isinstance(bucketed, bool)  # resolved at training and saved in the checkpoint
    assert pads_short_clips(ckpt) is (not bucketed)
    i = run["paths"].index(run["wavs"]["short"])
    feature = compute_feature(load(run["paths"][i], sr=ckpt.feature.sr)[0], ckpt.feature)
    padded, whole = (predict_proba(ckpt, [feature], pad_to_window=pad) for pad in (True, False))
    want = run["torch"].proba[i]  # predict_paths, calibrated by the checkpoint's temperature
    got = apply_checkpoint_calibration(ckpt, whole if bucketed else padded)[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6, err_msg=run["variant"])
    if getattr(ckpt.model, "min_frames", 1) < ckpt.clip_frames:  # else both pad to min_frames
        assert np.abs(padded - whole).max() > 1e-6  # the choice matters for this clip
