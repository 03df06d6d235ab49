"""Tampered checkpoints are refused before any big tensor exists, with a CheckpointError naming the file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from soundclass.checkpoint import format as ckpt_module
from soundclass.checkpoint.format import (
    META_NAME,
    WEIGHTS_NAME,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from soundclass.config import config_to_dict
from soundclass.errors import CheckpointError, ParameterError
from soundclass.models import create_model, model_spec

CLASSES = ("a", "b", "c")


def _save(folder, name="cnn", **kwargs):
    torch.manual_seed(0)
    spec = model_spec(name)
    model = create_model(name, n_classes=len(CLASSES), n_features=spec.feature.n_features, **kwargs)
    train_config = {"model": name, "feature_config": config_to_dict(spec.feature)}
    clip = 64 if spec.input == "sequence" else None
    return save_checkpoint(folder, model, model_name=name, model_kwargs=kwargs, feature=spec.feature,
                           classes=CLASSES, train_config=train_config, clip_frames=clip)


@pytest.fixture(scope="module")
def cnn_dir(tmp_path_factory):
    return _save(tmp_path_factory.mktemp("ckpt") / "cnn")


@pytest.fixture
def tampered(cnn_dir, tmp_path):
    """A copy of the cnn checkpoint and a function editing its model.json."""
    out = tmp_path / "tampered"
    out.mkdir()
    (out / WEIGHTS_NAME).write_bytes((cnn_dir / WEIGHTS_NAME).read_bytes())
    text = (cnn_dir / META_NAME).read_text(encoding="utf-8")
    (out / META_NAME).write_text(text, encoding="utf-8")

    def edit(change):
        meta = json.loads(text)
        change(meta)
        (out / META_NAME).write_text(json.dumps(meta), encoding="utf-8")
        return out

    return edit


@pytest.fixture
def build_devices(monkeypatch):
    """Record the default device of every model build (real builds must not happen for tampered files)."""
    devices = []
    real = ckpt_module.create_model

    def spy(*args, **kwargs):
        devices.append(str(torch.get_default_device()))
        return real(*args, **kwargs)

    monkeypatch.setattr(ckpt_module, "create_model", spy)
    return devices


def test_untampered_loads(cnn_dir, build_devices):
    ck = load_checkpoint(cnn_dir)
    assert ck.clip_frames == 64 and ck.classes == CLASSES
    assert build_devices == ["meta", "cpu"]  # validated on 'meta', then built for real


def test_huge_channels_refused_on_meta_device(tampered, build_devices):
    folder = tampered(lambda m: m["model_kwargs"].update(channels=[65536] * 4))
    with pytest.raises(CheckpointError, match=r"model\.json: model 'cnn' .* would have [\d,]+ parameters"
                       ) as exc:
        load_checkpoint(folder)
    assert str(folder / META_NAME) in str(exc.value)
    assert build_devices == ["meta"]  # no real tensor was built


def test_kwargs_shape_mismatch_refused_before_real_build(tampered, build_devices):
    folder = tampered(lambda m: m["model_kwargs"].update(channels=[32, 32, 64, 128]))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights do not fit model 'cnn'.*"
                                              r"wrong shape: model\.conv_block1"):
        load_checkpoint(folder)
    assert build_devices == ["meta"]


@pytest.mark.parametrize(("value", "match"), [
    (10**12, r"model_kwargs\['channels'\]\[0\]=1000000000000 is out of bounds"),
    (float("inf"), r"model_kwargs\['channels'\]\[0\]=inf must be finite"),
])
def test_absurd_kwarg_numbers_refused_without_building(tampered, build_devices, value, match):
    folder = tampered(lambda m: m["model_kwargs"].update(channels=[value, 8]))
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint_meta(folder)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(folder)
    assert build_devices == []


def test_long_or_deep_kwargs_refused(tampered):
    with pytest.raises(CheckpointError, match="has 100000 entries"):
        read_checkpoint_meta(tampered(lambda m: m["model_kwargs"].update(channels=[1] * 100_000)))
    deep = [[[[[[1]]]]]]
    with pytest.raises(CheckpointError, match="nested more than"):
        read_checkpoint_meta(tampered(lambda m: m["model_kwargs"].update(pools=deep)))


@pytest.mark.parametrize(("clip", "match"), [
    (1e9, r"clip_frames=1000000000\.0 must be a positive integer"),
    (2.5, r"clip_frames=2\.5 must be a positive integer"),
    (0, r"clip_frames=0 must be a positive integer"),
    (True, r"clip_frames=True must be a positive integer"),
    (10**9, r"clip_frames=1000000000 is above \d+ \(600 s at [\d.]+ frames/s\)"),
])
def test_bad_clip_frames(tampered, build_devices, clip, match):
    folder = tampered(lambda m: m.update(clip_frames=clip))
    with pytest.raises(CheckpointError, match=match) as exc:
        load_checkpoint(folder)
    assert str(folder / META_NAME) in str(exc.value)
    assert build_devices == []


def test_save_refuses_fractional_clip_frames(tmp_path):
    model = create_model("cnn", n_classes=3, n_features=model_spec("cnn").feature.n_features)
    with pytest.raises(ParameterError, match=r"clip_frames=2\.5 must be a positive integer"):
        save_checkpoint(tmp_path / "c", model, model_name="cnn", model_kwargs={},
                        feature=model_spec("cnn").feature, classes=CLASSES, train_config={},
                        clip_frames=2.5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_refused(cnn_dir, tmp_path, bad):
    out = tmp_path / "nan"
    out.mkdir()
    (out / META_NAME).write_bytes((cnn_dir / META_NAME).read_bytes())
    tensors = load_file(str(cnn_dir / WEIGHTS_NAME))
    key = next(k for k in sorted(tensors) if k.endswith("fc1.weight"))
    tensors[key][0, 0] = float(bad)
    save_file(tensors, str(out / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_NAME}: tensor '{key}' holds 1 NaN/Inf value"):
        load_checkpoint(out)


def test_changed_feature_sr_refused(tampered):
    assert model_spec("cnn").feature.sr == 16000
    folder = tampered(lambda m: m["feature"].update(sr=22050))
    with pytest.raises(CheckpointError, match=r"feature differs from the one the model was trained on.*"
                                              r"sr=22050 \(expected 16000\)") as exc:
        load_checkpoint(folder)
    assert str(folder / META_NAME) in str(exc.value)


def test_consistent_sr_change_with_record_loads(tampered):
    """Training with another sr is a user's choice: recorded in both places, it loads."""
    def change(meta):
        meta["feature"]["sr"] = 22050
        meta["train_config"]["feature_config"]["sr"] = 22050
    assert load_checkpoint(tampered(change)).feature.sr == 22050


def test_changed_n_mels_refused_by_weight_shapes(tampered):
    def change(meta):
        meta["feature"]["n_mels"] = 96
        meta["train_config"]["feature_config"]["n_mels"] = 96
    with pytest.raises(CheckpointError, match="weights do not fit model 'cnn'.*wrong shape"):
        load_checkpoint(tampered(change))


def test_feature_out_of_bounds(tampered):
    with pytest.raises(CheckpointError, match=r"feature sr=1000000000 is outside \[1000, 768000\] Hz"):
        read_checkpoint_meta(tampered(lambda m: m["feature"].update(sr=10**9)))
    with pytest.raises(CheckpointError, match="feature n_fft=1048576 is above 65536"):
        read_checkpoint_meta(tampered(lambda m: m["feature"].update(n_fft=2**20, hop_length=512)))
    with pytest.raises(CheckpointError, match="n_features=16384 rows"):
        read_checkpoint_meta(tampered(lambda m: m["feature"].update(n_mels=16384, fmax=None)))


def test_pooling_and_input_must_fit_model(tampered):
    with pytest.raises(CheckpointError, match="feature pooling='mean' does not fit model 'cnn'"):
        read_checkpoint_meta(tampered(lambda m: m["feature"].update(pooling="mean")))
    with pytest.raises(CheckpointError, match="input='vector' but model 'cnn' takes 'sequence'"):
        read_checkpoint_meta(tampered(lambda m: m.update(input="vector")))


def test_too_many_classes(tampered):
    with pytest.raises(CheckpointError, match="200000 classes"):
        read_checkpoint_meta(tampered(lambda m: m.update(classes=[f"c{i}" for i in range(200_000)])))


def test_header_size_checked_before_reading(cnn_dir, monkeypatch, build_devices):
    monkeypatch.setattr(ckpt_module, "MAX_PARAMETERS", 1000)
    with pytest.raises(CheckpointError, match=rf"{WEIGHTS_NAME}: holds [\d,]+ values \(at most 1,000\)"):
        load_checkpoint(cnn_dir)
    assert build_devices == []


@pytest.mark.parametrize("name", ["seed-lstm", "seed-cnn"])
def test_other_models_validate_and_load(tmp_path, name):
    folder = _save(tmp_path / name, name)
    ck = load_checkpoint(folder)
    assert ck.model_name == name and not ck.model.training
