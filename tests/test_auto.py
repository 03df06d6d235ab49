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
        assert r["status"] == "scored" and r["folds"] == len(r["fold_macro_f1"]) >= 1 and r["of_folds"] == 3
        assert r["macro_f1_std"] >= 0 and 0 <= r["accuracy_mean"] <= 1
    # the chance model is far below after one fold: dropped, and the choice needs no more folds
    assert rows[chance_model]["dropped"] and "dropped" in rows[chance_model]["note"]
    assert not rows["logmel-logreg"]["dropped"] and "not run" in rows["logmel-logreg"]["note"]
    assert load_checkpoint(res.checkpoint_dir).model_name == "logmel-logreg"
    assert json.loads((tmp_path / "run" / "auto.json").read_text())["chosen"] == "logmel-logreg"
    from soundclass.evaluation.evaluate import evaluate_training
    from soundclass.training.auto import format_leaderboard

    ev = evaluate_training(res, out_dir=tmp_path / "run")
    assert ev.metrics["auto"]["chosen"] == "logmel-logreg"
    html = ev.files["report"].read_text()
    assert "Model choice" in html and chance_model in html
    text = format_leaderboard(rec)
    assert "* logmel-logreg" in text and "+-" in text and "final fit" in text


def test_auto_full_evaluation_scores_every_fold(tmp_path, demo, chance_model):
    cfg = _cfg(tmp_path, auto_candidates=f"{chance_model},logmel-logreg")
    res = auto_module.train_auto(demo, cfg, out_dir=tmp_path / "run", progress=False, eliminate=False)
    rows = {r["model"]: r for r in res.auto["candidates"]}
    assert res.auto["chosen"] == "logmel-logreg"
    for r in rows.values():
        assert r["folds"] == 3 == len(r["fold_macro_f1"]) and not r["dropped"]
    one = auto_module.cross_validate("logmel-logreg", cfg, demo)  # one candidate alone: the same folds
    assert one["fold_macro_f1"] == rows["logmel-logreg"]["fold_macro_f1"]


def test_auto_never_sees_the_validation_split(tmp_path, demo, monkeypatch, chance_model):
    prepared, seen = [], []
    real_prepare, real_run = auto_module.prepare_data, auto_module._Candidate.run_fold

    def spy_prepare(*a, **kw):
        prepared.append(real_prepare(*a, **kw))
        return prepared[-1]

    def spy_run(self, i, on_epoch):
        assert isinstance(self.features, StoredFeatures)  # with a cache dir: read on use, never all held
        seen.append((self.name, self.data, self.features.paths, np.asarray(self.targets).copy()))
        return real_run(self, i, on_epoch)

    monkeypatch.setattr(auto_module, "prepare_data", spy_prepare)
    monkeypatch.setattr(auto_module._Candidate, "run_fold", spy_run)
    cfg = _cfg(tmp_path, auto_candidates=f"logmel-logreg,{chance_model}")
    res = auto_module.train_auto(demo, cfg, out_dir=tmp_path / "run", progress=False, eliminate=False)
    assert len(prepared) == 2 and {s[0] for s in seen} == {"logmel-logreg", chance_model}
    val_paths = {it.path for it in res.val_items}
    for _, data, ids, targets in seen:
        assert any(data is p for p in prepared)
        assert val_paths == {data.items[i].path for i in data.val_idx}  # the run's own split
        # by cache entry (content): exact duplicates are tied into one group, so on one side
        train_ids = set(take(data.features, data.train_idx).paths)
        val_ids = set(take(data.features, data.val_idx).paths)
        assert set(ids) == train_ids and not set(ids) & val_ids
        np.testing.assert_array_equal(targets, data.targets[data.train_idx])


def test_auto_time_budget_skips_and_records(tmp_path, demo, chance_model):
    cfg = _cfg(tmp_path, auto_candidates=f"logmel-logreg,cnn,{chance_model}", time_budget=1e-3)
    res = auto_module.train_auto(demo, cfg, out_dir=tmp_path / "run", progress=False, eliminate=False)
    rows = {r["model"]: r for r in res.auto["candidates"]}
    first = rows["logmel-logreg"]  # cheapest: always scored, on the folds that fit (one)
    assert first["status"] == "scored" and first["folds"] == 1 and "time budget: 1 of 3" in first["note"]
    assert rows["cnn"]["status"] == "skipped" and "estimated" in rows["cnn"]["note"]
    assert rows["cnn"]["folds"] == 0
    assert res.auto["chosen"] in ("logmel-logreg", chance_model)


def test_auto_computes_each_feature_once_without_a_cache(tmp_path, demo, chance_model, monkeypatch):
    """Candidates sharing a FeatureConfig share its features (in memory, no cache dir): one
    extraction per clip and feature, whatever the number of candidates and folds."""
    from soundclass.extraction import extract as extract_module
    from soundclass.models import model_spec

    twin = "test-chance-twin"
    register_model(twin, spec=model_spec(chance_model))(ChanceModel)
    calls = []
    real = extract_module._extract_one

    def counting(path, config):
        calls.append((path, config.kind, config.sr))
        return real(path, config)

    monkeypatch.setattr(extract_module, "_extract_one", counting)
    cfg = TrainConfig(n_jobs=1, auto_candidates=f"{chance_model},{twin},logmel-logreg")
    res = auto_module.train_auto(demo, cfg, out_dir=tmp_path / "run", progress=False, eliminate=False)
    rows = {r["model"]: r for r in res.auto["candidates"]}
    assert all(r["folds"] == 3 for r in rows.values())
    n = len(demo.items)
    assert sorted(set(calls)) == sorted(calls)  # never a clip twice for one feature
    assert len(calls) == 2 * n  # two feature configs, three candidates, nine folds, and the final fit


def test_auto_prints_candidate_fold_epoch_and_budget(tmp_path, demo, chance_model, capsys):
    cfg = _cfg(tmp_path, auto_candidates=f"logmel-logreg,{chance_model}", time_budget=300)
    auto_module.train_auto(demo, cfg, out_dir=tmp_path / "run", progress=True, eliminate=False)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("auto: ")]
    assert any(ln.startswith("auto: 2 candidates, cheapest first: logmel-logreg") for ln in lines)
    assert any(ln.startswith("auto: logmel-logreg fold 1/3 (budget left ") for ln in lines)
    assert any(ln.startswith(f"auto: {chance_model} fold 3/3 epoch 2/2 val macro-F1 ") and "budget left" in ln
               for ln in lines)
    assert any(ln.startswith("auto: chose logmel-logreg") for ln in lines)
    assert f"features ({chance_model})" in err and "features (logmel-logreg)" in err  # the bars' labels


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


def test_groups_that_ties_make_one_stop_auto_at_once_with_the_reason(tmp_path, demo, monkeypatch):
    """When copies tie every group into one, no grouped split exists: a SplitError naming the cause
    and the ways out, before a second candidate spends its features on the same dead end."""
    import dataclasses
    import shutil

    from soundclass.data.dataset import Dataset
    from soundclass.errors import SplitError

    items = [it for it in demo.items if "corrupt" not in it.path]
    groups = sorted({it.group for it in items})
    # one copy of a clip of each group in every other group: every group is tied to every other one
    extra = []
    for k, g in enumerate(groups):
        src = next(it for it in items if it.group == g)
        dst = tmp_path / f"copy_{k}.wav"
        shutil.copyfile(src.path, dst)
        extra.append(dataclasses.replace(src, path=str(dst), group=groups[(k + 1) % len(groups)]))
    tied = Dataset(tuple(items + extra), demo.classes, demo.root)
    prepared = []
    real = auto_module.prepare_data
    monkeypatch.setattr(auto_module, "prepare_data", lambda *a, **kw: prepared.append(1) or real(*a, **kw))
    cfg = _cfg(tmp_path, auto_candidates="logmel-logreg,mfcc-svm", near_duplicates=0.0)
    with pytest.raises(SplitError, match=r"became one group once .* --no-near-duplicates"):
        train(tied, cfg.replace(model="auto"), out_dir=tmp_path / "run", progress=False)
    assert len(prepared) == 1  # the first candidate's features only
    with pytest.raises(SplitError):
        train(tied, cfg.replace(model="logmel-logreg"), out_dir=tmp_path / "run2", progress=False)
