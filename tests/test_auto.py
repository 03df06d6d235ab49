"""``train`` for classical models, the aisfx optimizer groups, and ``--model auto``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from soundclass.checkpoint.format import load_checkpoint
from soundclass.config import FeatureConfig
from soundclass.extraction.stored import StoredFeatures, take
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import predict_logits, predict_proba
from soundclass.models import ModelSpec, register_model
from soundclass.training import TrainConfig, train
from soundclass.training import auto as auto_module
from soundclass.training import trainer as trainer_module

CHANCE = "test-chance"


class ChanceModel(nn.Module):
    """Ignores its input: a learnable bias only, so it cannot beat the class prior."""

    def __init__(self, *, n_classes, n_features):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_classes))
        self.n_features = n_features

    def forward(self, x):  # (B, n_features, T) -> (B, n_classes)
        return self.bias.expand(x.shape[0], -1) + 0.0 * x.mean()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from soundclass.data import synth

    return synth.make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=6, sr=8000,
                                   n_sources=3, n_corrupt=1, seed=0)


@pytest.fixture
def chance_model():
    register_model(CHANCE, spec=ModelSpec(
        feature=FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=8), input="sequence",
        standardize=True, clip_seconds=0.5,
        train={"epochs": 2, "batch_size": 8, "lr": 1e-2}, description="chance-level test model"))(ChanceModel)
    return CHANCE  # the autouse model_registry fixture removes it afterwards


def _cfg(tmp_path, **kw):
    return TrainConfig(n_jobs=1, cache_dir=str(tmp_path / "cache"), **kw)  # demo items carry groups


# ------------------------------------------------------------------ classical models through train()

@pytest.mark.parametrize("name", ["mfcc-svm", "logmel-logreg", "aisfx-probe"])
def test_classical_model_trains_saves_reloads_and_predicts_identically(tmp_path, demo, name):
    from soundclass.evaluation.evaluate import evaluate_training

    res = train(demo, _cfg(tmp_path, model=name), out_dir=tmp_path / "run", progress=False)
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.model_name == name and ck.norm_mean is None and ck.clip_frames is None
    assert res.best_epoch == 0 and len(res.history) == 1
    from soundclass.extraction.cache import get_features

    feats, _ = get_features([it.path for it in res.val_items], ck.feature, cache_dir=str(tmp_path / "cache"), n_jobs=1,
                            progress=False)
    again = softmax(predict_logits(ck.model, feats, input_kind=ck.input, clip_frames=ck.clip_frames))
    np.testing.assert_allclose(again, res.val_proba, atol=1e-6)
    assert res.val_proba.shape == (len(res.val_items), len(demo.classes))
    ev = evaluate_training(res, out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "report.html").is_file() and ev.metrics["macro_f1"] > 0.5
    assert "auto" not in ev.metrics and "Model choice" not in ev.files["report"].read_text()


def test_classical_with_folds_is_refused(tmp_path, demo):
    from soundclass.errors import ParameterError

    with pytest.raises(ParameterError, match="fitted once"):
        train(demo, _cfg(tmp_path, model="logmel-logreg", folds=2), out_dir=tmp_path / "run", progress=False)


def test_aisfx_optimizer_has_a_lower_backbone_rate():
    from soundclass.models import create_model
    from soundclass.training.config import resolve_config
    from soundclass.training.optim import make_optimizer, make_scheduler

    model = create_model("aisfx", n_classes=3, n_features=96)
    for scheduler in ("cosine", "onecycle"):
        cfg = resolve_config(TrainConfig(model="aisfx", scheduler=scheduler))
        opt = make_optimizer(model, cfg)
        assert len(opt.param_groups) == 2
        sched = make_scheduler(opt, cfg, total_steps=20)
        for _ in range(5):
            opt.step()
            sched.step()
        head, backbone = opt.param_groups
        assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
        assert backbone["lr"] == pytest.approx(0.1 * head["lr"])
        assert 0 < head["lr"] <= cfg.lr
    plain = make_optimizer(nn.Linear(2, 2), resolve_config(TrainConfig(model="cnn")))
    assert len(plain.param_groups) == 1


# ------------------------------------------------------------------ --model auto

def test_auto_is_the_default_and_picks_the_better_candidate(tmp_path, demo, chance_model):
    assert TrainConfig().model == "auto"
    cfg = _cfg(tmp_path, auto_candidates=f"{chance_model},logmel-logreg")
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    rec = res.auto
    assert rec["chosen"] == "logmel-logreg"
    rows = {r["model"]: r for r in rec["candidates"]}
    assert rows["logmel-logreg"]["macro_f1_mean"] > rows[chance_model]["macro_f1_mean"] + 0.3
    for r in rows.values():
        assert r["status"] == "scored" and r["folds"] == 3 == len(r["fold_macro_f1"])
        assert r["macro_f1_std"] >= 0 and 0 <= r["accuracy_mean"] <= 1
    assert load_checkpoint(res.checkpoint_dir).model_name == "logmel-logreg"
    assert json.loads((tmp_path / "run" / "auto.json").read_text())["chosen"] == "logmel-logreg"
    from soundclass.evaluation.evaluate import evaluate_training
    from soundclass.training.auto import format_leaderboard

    ev = evaluate_training(res, out_dir=tmp_path / "run")
    assert ev.metrics["auto"]["chosen"] == "logmel-logreg"
    html = ev.files["report"].read_text()
    assert "Model choice" in html and chance_model in html
    text = format_leaderboard(rec)
    assert "* logmel-logreg" in text and "+-" in text


def test_auto_never_sees_the_validation_split(tmp_path, demo, monkeypatch, chance_model):
    prepared, seen = [], []
    real_prepare, real_cv = trainer_module.prepare_data, auto_module.cross_validate

    def spy_prepare(*a, **kw):
        prepared.append(real_prepare(*a, **kw))
        return prepared[-1]

    def spy_cv(name, config, features, targets, **kw):
        assert isinstance(features, StoredFeatures)  # with a cache dir: read on use, never all held
        seen.append((name, features.paths, np.asarray(targets).copy()))
        return real_cv(name, config, features, targets, **kw)

    monkeypatch.setattr(trainer_module, "prepare_data", spy_prepare)
    monkeypatch.setattr(auto_module, "cross_validate", spy_cv)
    cfg = _cfg(tmp_path, auto_candidates=f"logmel-logreg,{chance_model}")
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    assert len(seen) == 2 == len(prepared)
    val_paths = {it.path for it in res.val_items}
    for data, (_, ids, targets) in zip(prepared, seen, strict=True):
        assert val_paths == {data.items[i].path for i in data.val_idx}  # the run's own split
        # by cache entry (content): exact duplicates are tied into one group, so on one side
        train_ids = set(take(data.features, data.train_idx).paths)
        val_ids = set(take(data.features, data.val_idx).paths)
        assert set(ids) == train_ids and not set(ids) & val_ids
        np.testing.assert_array_equal(targets, data.targets[data.train_idx])


def test_auto_time_budget_skips_and_records(tmp_path, demo, chance_model):
    cfg = _cfg(tmp_path, auto_candidates=f"logmel-logreg,cnn,{chance_model}", time_budget=1e-3)
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    rows = {r["model"]: r for r in res.auto["candidates"]}
    first = rows["logmel-logreg"]  # cheapest: always scored, on the folds that fit (one)
    assert first["status"] == "scored" and first["folds"] == 1 and "time budget: 1 of 3" in first["note"]
    assert rows["cnn"]["status"] == "skipped" and "estimated" in rows["cnn"]["note"]
    assert rows["cnn"]["folds"] == 0
    assert res.auto["chosen"] in ("logmel-logreg", chance_model)


def test_auto_rejects_unknown_candidates(tmp_path, demo):
    from soundclass.errors import ParameterError

    with pytest.raises(ParameterError, match="auto_candidates"):
        train(demo, _cfg(tmp_path, auto_candidates="logmel-logreg,nope"), out_dir=tmp_path / "r", progress=False)


def test_aisfx_fine_tune_trains_saves_and_reloads(tmp_path, demo):
    from soundclass.extraction.cache import get_features

    cfg = _cfg(tmp_path, model="aisfx", epochs=1, batch_size=8, mixup_alpha=0.0)
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.model_name == "aisfx" and len(res.history) == 1
    feats, _ = get_features([it.path for it in res.val_items], ck.feature, cache_dir=str(tmp_path / "cache"),
                            n_jobs=1, progress=False)
    again = predict_proba(ck, feats)  # scored as trained (short clips padded to the window or not)
    np.testing.assert_allclose(again, res.val_proba, atol=1e-5)


def test_cli_auto_with_folds_and_a_classical_winner_says_so_once(tmp_path, capsys, caplog):
    """--model auto composes with --folds; a classical winner is fitted once, and each warning shows once."""
    from soundclass.cli import main
    from soundclass.data import synth

    data = synth.make_demo_dataset(tmp_path / "data", n_per_class=6, sr=16000, n_sources=3, seed=1)
    assert main(["train", str(data.root), "-o", str(tmp_path / "run"), "--model", "auto",
                 "--auto-candidates", "logmel-logreg", "--folds", "2", "--jobs", "1", "--quiet"]) == 0
    out, err = capsys.readouterr()
    err += caplog.text  # warnings are logged (stderr in the terminal)
    assert "logmel-logreg (chosen by --model auto)" in out
    note = "--folds 2 not used: the chosen logmel-logreg is fitted once"
    assert (out + err).count(note) == 1
    leak = "guessed from file names"
    assert (out + err).count(leak) <= 1  # logged when it arose, never printed a second time
    record = json.loads((tmp_path / "run" / "auto.json").read_text())
    assert record["chosen"] == "logmel-logreg" and any(note in n for n in record["notes"])


# ------------------------------------------------------------------ cost priors of the time budget

def test_priors_scale_with_the_seconds_a_model_sees():
    from soundclass.training.auto import estimate_fold_seconds

    short = estimate_fold_seconds("cnn", 1000, epochs=10, durations=np.full(50, 0.5))
    long = estimate_fold_seconds("cnn", 1000, epochs=10, durations=np.full(50, 5.0))
    assert 5 < long / short < 10  # per clip overhead + per second of audio
    # a long tail does not count beyond the training crop (at most twice the median)
    tail = np.r_[np.full(45, 2.0), np.full(5, 400.0)]
    assert estimate_fold_seconds("cnn", 1000, epochs=10, durations=tail) < 1.2 * estimate_fold_seconds(
        "cnn", 1000, epochs=10, durations=np.full(50, 4.0))
    # classical fits and vector models do not depend on the length; unknown models have no prior
    assert estimate_fold_seconds("mfcc-svm", 100, epochs=None, durations=np.full(5, 1.0)) == \
        estimate_fold_seconds("mfcc-svm", 100, epochs=None, durations=np.full(5, 60.0))
    assert estimate_fold_seconds("seed-cnn", 100, epochs=3) == pytest.approx(0.9)
    assert estimate_fold_seconds("no-such-model", 100, epochs=3) is None
    assert estimate_fold_seconds("cnn", 100, epochs=None) is None


def test_aisfx_feature_prior_counts_blocks():
    from soundclass.training.auto import estimate_extract_seconds

    cfg = TrainConfig(model="aisfx-probe")

    def est(seconds):
        return estimate_extract_seconds(cfg, 10, cache=False, durations=np.full(3, seconds))

    assert est(0.3) == est(2.0)  # one zero-padded block either way
    assert est(7.0) == pytest.approx(5 * est(1.0))  # 302 frames: blocks at 0, 50, ..., 200
    logmel = TrainConfig(model="cnn")
    assert estimate_extract_seconds(logmel, 10, cache=False, durations=np.full(3, 7.0)) < est(0.3)
    assert estimate_extract_seconds(logmel, 10, cache=True) < estimate_extract_seconds(logmel, 10, cache=False)


def test_sample_durations_reads_headers_and_leaves_out_unreadable(tmp_path, demo):
    from soundclass.training.auto import sample_durations

    paths = [it.path for it in demo.items]
    d = sample_durations(paths, seed=0)
    assert len(d) == len(paths) - 1  # the corrupt clip is left out
    assert np.all(d > 0)
    assert len(sample_durations(paths, seed=0, n=5)) <= 5
    assert sample_durations([], seed=0).size == 0
