"""fit() and train() on tiny models: convergence, files, determinism, resume, stopping, end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from _training_models import (
    CLASSES,
    E2E,
    N_FEAT,
    SEQ,
    VEC,
    registered,
    sequence_data,
    split,
    vector_data,
)
from soundclass.checkpoint import state as state_module
from soundclass.checkpoint.format import load_checkpoint
from soundclass.checkpoint.state import load_training_state
from soundclass.errors import CheckpointError, ParameterError
from soundclass.inference.predictor import predict_proba
from soundclass.models import model_spec
from soundclass.training import TrainConfig, fit, loop, norm_stats


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    with registered():
        yield


def run(tmp_path, config, data=None, **kw):
    Xtr, ytr, Xva, yva = data if data is not None else split(*vector_data())
    return fit(Xtr, ytr, Xva, yva, classes=CLASSES, config=config, out_dir=tmp_path, progress=False, **kw)


def strip_seconds(history):
    return [{k: v for k, v in row.items() if k != "seconds"} for row in history]


def weights(folder):
    return load_file(str(folder / "model.safetensors"))


# ------------------------------------------------------------------ fit


def test_vector_loss_decreases_and_files(tmp_path):
    res = run(tmp_path, TrainConfig(model=VEC, epochs=8))
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.5 * losses[0]
    assert res.history[-1]["val_accuracy"] >= 0.9
    assert (tmp_path / "history.json").is_file() and (tmp_path / "config.json").is_file()
    hist = json.loads((tmp_path / "history.json").read_text())
    assert strip_seconds(hist) == strip_seconds(res.history)
    assert set(hist[0]) == {"epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "seconds"}
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.model_name == VEC and ck.classes == CLASSES and ck.metrics["epoch"] == res.best_epoch
    assert ck.train_config["epochs"] == 8
    assert TrainConfig.from_dict(ck.train_config) == res.config  # the checkpoint re-creates the run
    assert TrainConfig.from_dict(json.loads((tmp_path / "config.json").read_text())) == res.config
    Xtr, _, Xva, yva = split(*vector_data())
    mean, std = norm_stats(Xtr)  # standardization from the TRAIN part only
    np.testing.assert_allclose(ck.norm_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(ck.norm_std, std, rtol=1e-6)
    np.testing.assert_allclose(predict_proba(ck, Xva), res.val_proba, rtol=1e-5, atol=1e-6)


def test_sequence_model_trains(tmp_path):
    data = split(*sequence_data())
    res = run(tmp_path, TrainConfig(model=SEQ, epochs=6, spec_augment=False), data=data)
    assert res.clip_frames == round(res.config.clip_seconds * 8000 / 128)
    assert res.history[-1]["train_loss"] < res.history[0]["train_loss"]
    assert max(r["val_accuracy"] for r in res.history) >= 0.8
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.input == "sequence" and ck.clip_frames == res.clip_frames


@pytest.mark.parametrize("changes", [{}, {"bucket": True}, {"bucket": False, "clip_percentile": 50.0}])
def test_crop_rule_and_bucketing_train_mixed_lengths(tmp_path, changes):
    from soundclass.training import clip_seconds_from_data

    data = split(*sequence_data())  # 8-59 frames at 62.5 frames/s
    res = run(tmp_path, TrainConfig(model=SEQ, epochs=6, spec_augment=False, **changes), data=data)
    want = clip_seconds_from_data([x.shape[1] for x in data[0]], frame_rate=8000 / 128,
                                  percentile=changes.get("clip_percentile", 90.0))
    assert res.config.clip_seconds == pytest.approx(want)
    from soundclass.training.data import bucket_from_data

    saved = json.loads((tmp_path / "config.json").read_text())
    auto = bucket_from_data([x.shape[1] for x in data[0]], clip_frames=res.clip_frames)
    assert saved["bucket"] is changes.get("bucket", auto) and saved["clip_seconds"] == pytest.approx(want)
    assert max(r["val_accuracy"] for r in res.history) >= 0.8


@pytest.mark.parametrize("extra", [{}, {"balance": "sampler", "scheduler": "cosine", "optimizer": "adamw"}])
def test_same_seed_same_result_other_seed_differs(tmp_path, extra):
    a = run(tmp_path / "a", TrainConfig(model=VEC, epochs=3, seed=5, **extra))
    b = run(tmp_path / "b", TrainConfig(model=VEC, epochs=3, seed=5, **extra))
    c = run(tmp_path / "c", TrainConfig(model=VEC, epochs=3, seed=6, **extra))
    assert strip_seconds(a.history) == strip_seconds(b.history)
    wa, wb, wc = (weights(r.last_dir) for r in (a, b, c))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert strip_seconds(a.history) != strip_seconds(c.history)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.parametrize("model", [VEC, SEQ])
def test_resume_equals_uninterrupted(tmp_path, monkeypatch, model):
    if model == SEQ:
            data = split(*sequence_data(8))
    else:
        data = split(*vector_data())
    cfg = TrainConfig(model=model, epochs=5, scheduler="onecycle", seed=3)
    if model == SEQ:  # every source of randomness: crops, warps, SpecAugment, mixup, dropout, sampler
        cfg = cfg.replace(spec_augment=True, mixup_alpha=0.4, label_smoothing=0.1, balance="sampler",
                          freq_warp=0.1, time_stretch=0.15)
    full = run(tmp_path / "full", cfg, data=data)

    real = loop.train_one_epoch
    calls = {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part", cfg, data=data)
    assert load_training_state(tmp_path / "part" / "last").epoch == 1
    monkeypatch.setattr(loop, "train_one_epoch", real)
    resumed = run(tmp_path / "part", cfg, data=data, resume=True)
    assert strip_seconds(resumed.history) == strip_seconds(full.history)
    wf, wr = weights(full.last_dir), weights(resumed.last_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert resumed.best_epoch == full.best_epoch


def test_resume_after_a_save_cut_short_is_refused(tmp_path, monkeypatch):
    """Killed between training_state.safetensors and training_state.json: no silent extra epoch."""
    cfg = TrainConfig(model=VEC, epochs=4)
    real = state_module.write_json
    calls = {"n": 0}

    def killed_on_second_save(path, obj):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 1: the new tensors are on disk, the JSON is not
            raise KeyboardInterrupt
        real(path, obj)

    monkeypatch.setattr(state_module, "write_json", killed_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, cfg)
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="interrupted while saving"):
        run(tmp_path, cfg, resume=True)


def test_resume_with_other_config_is_refused(tmp_path):
    run(tmp_path, TrainConfig(model=VEC, epochs=2))
    with pytest.raises(ParameterError, match="lr"):
        run(tmp_path, TrainConfig(model=VEC, epochs=2, lr=0.5), resume=True)


def test_early_stopping_stops(tmp_path):
    # an lr too small to change anything: validation never improves after epoch 0
    res = run(tmp_path, TrainConfig(model=VEC, epochs=20, lr=1e-12, patience=2, scheduler="none"))
    assert res.stopped_early and len(res.history) == 3 and res.best_epoch == 0


def test_patience_zero_never_stops(tmp_path):
    res = run(tmp_path, TrainConfig(model=VEC, epochs=5, lr=1e-12, patience=0, scheduler="none"))
    assert not res.stopped_early and len(res.history) == 5 and res.best_epoch == 0


def test_no_validation_keeps_last_epoch(tmp_path):
    Xtr, ytr, _, _ = split(*vector_data())
    res = fit(Xtr, ytr, [], [], classes=CLASSES, config=TrainConfig(model=VEC, epochs=2),
              out_dir=tmp_path, progress=False)
    assert res.best_epoch == 1 and res.val_proba is None
    assert np.isnan(res.history[-1]["val_loss"])


def test_bad_features_are_rejected(tmp_path):
    Xtr, ytr, Xva, yva = split(*vector_data())
    Xtr[0] = np.zeros(N_FEAT + 1, np.float32)
    with pytest.raises(ParameterError, match=r"train_features\[0\] has shape"):
        run(tmp_path, TrainConfig(model=VEC, epochs=1), data=(Xtr, ytr, Xva, yva))


# ------------------------------------------------------------------ train() end to end

@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from soundclass.data import synth

    return synth.make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=6, sr=8000,
                                   n_sources=3, n_corrupt=2, seed=0)


def test_train_end_to_end_skips_corrupt_files(tmp_path, demo):
    from soundclass.training import train

    cfg = TrainConfig(model=E2E, n_jobs=1, val_size=8, mixup_alpha=0.4, spec_augment=True,
                      label_smoothing=0.1, cache_dir=str(tmp_path / "cache"))
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    bad = {str(p) for p in demo.paths if "corrupt" in p}
    assert len(bad) == 2 and {str(p) for p, _ in res.failures} == bad
    assert all(reason for _, reason in res.failures)
    assert any("skipped" in w for w in res.warnings)
    split_json = json.loads((tmp_path / "run" / "split.json").read_text())
    assert not set(split_json["train"]) & set(split_json["val"])
    assert set(split_json["train"]) | set(split_json["val"]) == set(demo.paths) - bad
    assert {f["path"] for f in split_json["failed"]} == bad
    # grouped split: no source on both sides
    groups = {it.path: it.group for it in demo.items}
    assert not {groups[p] for p in split_json["train"]} & {groups[p] for p in split_json["val"]}
    assert [it.path for it in res.val_items] == split_json["val"]
    assert 5 <= len(res.val_items) <= 11  # val_size=8 clips of 24, groups of 2 are indivisible
    assert res.val_proba.shape == (len(res.val_items), len(demo.classes))
    assert res.classes == demo.classes and len(res.history) == 3
    cfg_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg_json["clip_seconds"] == 0.5 and cfg_json["feature_config"]["n_mels"] == N_FEAT
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.clip_frames == round(0.5 * 8000 / 128) and ck.classes == demo.classes
    assert (tmp_path / "run" / "last" / "training_state.json").is_file()


def test_train_warns_about_leaky_random_split(tmp_path, demo):
    from soundclass.data.dataset import Dataset, Item
    from soundclass.training import train

    ungrouped = Dataset(tuple(Item(it.path, it.label) for it in demo.items if "corrupt" not in it.path),
                        demo.classes, demo.root)
    res = train(ungrouped, TrainConfig(model=E2E, n_jobs=1, epochs=1), out_dir=tmp_path, progress=False)
    assert any("--group-pattern" in w for w in res.warnings)
    grouped = TrainConfig(model=E2E, n_jobs=1, epochs=1, group_pattern=r"^(\w+_s\d+)_")
    res = train(ungrouped, grouped, out_dir=tmp_path / "g", progress=False)
    assert not any("--group-pattern" in w for w in res.warnings)


@pytest.mark.parametrize("model", ["seed-cnn", "seed-lstm", pytest.param("cnn", marks=pytest.mark.slow)])
def test_real_models_train(tmp_path, demo, model):
    from soundclass.training import train

    kw = {"model_kwargs": {}} if model != "cnn" else {}
    cfg = TrainConfig(model=model, n_jobs=1, epochs=2, batch_size=8, cache_dir=str(tmp_path / "cache"), **kw)
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    assert len(res.history) == 2 and np.isfinite(res.history[-1]["train_loss"])
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.model_name == model and ck.input == model_spec(model).input
    np.testing.assert_allclose(res.val_proba.sum(axis=1), 1.0, rtol=1e-5)


def test_resume_refuses_a_different_split(tmp_path, demo):
    from soundclass.training import train

    cfg = TrainConfig(model=E2E, n_jobs=1, epochs=1, val_size=8)
    train(demo, cfg, out_dir=tmp_path, progress=False)
    with pytest.raises(ParameterError, match="split differs"):
        train(demo, cfg.replace(seed=1), out_dir=tmp_path, progress=False, resume=True)


@pytest.mark.slow
def test_fsdd_speaker_grouped_training(tmp_path, fsdd_dir):
    from soundclass.data.dataset import discover
    from soundclass.training import train

    ds = discover(fsdd_dir)
    idx = [i for i, it in enumerate(ds.items) if it.name.split("_")[2] in {f"{k}.wav" for k in range(4)}]
    sub = ds.subset(idx)  # 4 takes per digit and speaker: 240 clips
    cfg = TrainConfig(model="seed-lstm", epochs=5, n_jobs=1, group_pattern=r"^\d+_([a-z]+)_",
                      cache_dir=str(tmp_path / "cache"))
    res = train(sub, cfg, out_dir=tmp_path / "run", progress=False)
    speakers = {it.name.split("_")[1] for it in res.val_items}
    train_paths = json.loads((tmp_path / "run" / "split.json").read_text())["train"]
    assert not speakers & {p.rsplit("/", 1)[-1].split("_")[1] for p in train_paths}
    assert not any("--group-pattern" in w for w in res.warnings)
    assert max(r["val_accuracy"] for r in res.history) > 0.3  # chance is 0.1, unseen speakers


@pytest.mark.slow
def test_donateacry_imbalanced_classes(tmp_path, donateacry_dir):
    from soundclass.data.dataset import discover
    from soundclass.training import train

    ds = discover(donateacry_dir)
    counts = np.bincount(ds.targets, minlength=len(ds.classes))
    assert counts.max() > 5 * counts.min()  # the point of this dataset
    # near_duplicates=0: the fingerprint search takes minutes on these similar-length clips and is
    # not what this test is about (tests/test_leakproof_split.py covers it)
    cfg = TrainConfig(model="seed-cnn", epochs=2, n_jobs=1, balance="sampler", cache_dir=str(tmp_path / "c"),
                      near_duplicates=0.0)
    res = train(ds, cfg, out_dir=tmp_path / "run", progress=False)
    assert res.val_proba.shape == (len(res.val_items), len(ds.classes))
    val_counts = np.bincount([ds.classes.index(it.label) for it in res.val_items], minlength=len(ds.classes))
    assert np.all(val_counts >= 1)  # stratified: every class is validated


def test_the_trainer_trains_one_model_and_the_entry_point_chooses(tmp_path, monkeypatch):
    # auto sits above the trainer: the trainer refuses 'auto' before touching the data,
    # and soundclass.training.train hands 'auto' to train_auto, any other model to train_model
    import soundclass.training as training
    from soundclass.data.dataset import Dataset
    from soundclass.training.trainer import train_model

    empty = Dataset((), ())
    with pytest.raises(ParameterError, match=r"^model='auto' is chosen above the trainer"):
        train_model(empty, TrainConfig(model="auto"), out_dir=tmp_path)
    calls = []
    monkeypatch.setattr(training, "train_auto", lambda *a, **kw: calls.append(("auto", kw)) or "chosen")
    monkeypatch.setattr(training, "train_model", lambda *a, **kw: calls.append(("model", kw)) or "trained")
    assert training.train(empty, TrainConfig(model="auto"), out_dir=tmp_path) == "chosen"
    assert training.train(empty, TrainConfig(model="cnn"), out_dir=tmp_path, resume=True) == "trained"
    assert [c for c, _ in calls] == ["auto", "model"] and calls[1][1]["resume"] is True
