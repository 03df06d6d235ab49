"""training.kfold: ``train --folds K`` members, out-of-fold predictions, the ensemble checkpoint."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from _training_models import E2E, VEC, registered
from soundclass.checkpoint.format import load_checkpoint
from soundclass.data.dataset import Dataset, Item
from soundclass.data.synth import DEMO_GROUP_PATTERN
from soundclass.errors import ParameterError
from soundclass.extraction.extract import extract_file
from soundclass.inference.export import export_onnx
from soundclass.inference.predictor import predict_proba
from soundclass.models import Ensemble
from soundclass.training import TrainConfig, norm_stats, settings, train


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    with registered():
        yield


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from soundclass.data import synth

    return synth.make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=6, sr=8000, n_sources=3, seed=0)


@pytest.fixture(scope="module")
def vec_run(tmp_path_factory, demo):
    out = tmp_path_factory.mktemp("vec") / "run"
    cfg = TrainConfig(model=VEC, n_jobs=1, epochs=3, folds=3, val_size=0, group_pattern=DEMO_GROUP_PATTERN)
    return out, train(demo, cfg, out_dir=out, progress=False)


def _features(ck, paths):
    return [extract_file(p, ck.feature) for p in paths]


def test_oof_covers_every_training_clip_once_by_a_member_that_never_saw_it(vec_run, demo):
    out, res = vec_run
    rows = list(csv.DictReader((out / "oof.csv").open(encoding="utf-8")))
    assert sorted(r["path"] for r in rows) == sorted(demo.paths)  # every clip once (val_size=0)
    assert list(rows[0]) == ["path", "label", "predicted", *(f"proba_{c}" for c in demo.classes)]
    folds = json.loads((out / "folds.json").read_text())
    assert folds["n_folds"] == 3 and folds["grouped"]
    fold_of = {c["path"]: c["fold"] for c in folds["clips"]}
    group_folds = {}
    for c in folds["clips"]:
        group_folds.setdefault(c["group"], set()).add(c["fold"])
    assert all(len(f) == 1 for f in group_folds.values())  # a source never spans folds
    labels = {it.path: it.label for it in demo.items}
    for k in range(3):
        member = load_checkpoint(out / "folds" / f"fold_{k}" / "checkpoint")
        held = [r for r in rows if fold_of[r["path"]] == k]
        trained_on = [p for p in demo.paths if fold_of[p] != k]
        assert held and trained_on
        # the member's standardization is that of exactly the other folds: it trained on them only
        mean, std = norm_stats(_features(member, trained_on))
        np.testing.assert_allclose(member.norm_mean, mean, rtol=1e-5, atol=1e-5)
        # and the out-of-fold rows of fold k are member k's predictions
        proba = predict_proba(member, _features(member, [r["path"] for r in held]))
        got = np.array([[float(r[f"proba_{c}"]) for c in demo.classes] for r in held])
        np.testing.assert_allclose(got, proba, atol=2e-6)
        assert all(r["label"] == labels[r["path"]] for r in held)
    metrics = json.loads((out / "oof.json").read_text())
    y = np.array([demo.classes.index(r["label"]) for r in rows])
    pred = np.array([demo.classes.index(r["predicted"]) for r in rows])
    assert metrics["accuracy"] == pytest.approx(float(np.mean(y == pred)))
    assert res.oof["is_validation"] and res.oof["n_folds"] == 3 and len(res.val_items) == len(demo.paths)


def test_ensemble_checkpoint_is_the_mean_of_the_members(vec_run, demo):
    out, res = vec_run
    ck = load_checkpoint(res.checkpoint_dir)
    assert isinstance(ck.model, Ensemble) and ck.model_name == "ensemble-vector"
    assert ck.model_kwargs["member"] == VEC and ck.model_kwargs["n_members"] == 3
    assert ck.metrics["split"] == "out-of-fold"
    feats = _features(ck, demo.paths[:9])
    members = [load_checkpoint(out / "folds" / f"fold_{k}" / "checkpoint") for k in range(3)]
    want = np.mean([predict_proba(m, feats) for m in members], axis=0)
    got = predict_proba(ck, feats)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not np.allclose(got, predict_proba(members[0], feats), atol=1e-3)  # a real average


def test_predict_and_export_use_the_ensemble(vec_run, demo, tmp_path):
    from soundclass.cli import main
    from soundclass.inference.export import read_metadata

    out, res = vec_run
    sub = tmp_path / "sub.csv"
    assert main(["predict", str(out), demo.root, "-o", str(sub), "--quiet", "--proba"]) == 0
    rows = list(csv.DictReader(sub.open(encoding="utf-8")))
    assert len(rows) == len(demo.paths) and {r["label"] for r in rows} <= set(demo.classes)
    onnx_path = export_onnx(out, tmp_path / "ens.onnx")
    assert read_metadata(onnx_path)["model_name"] == "ensemble-vector"
    import soundfile as sf

    y, sr = sf.read(demo.paths[0], dtype="float32")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (p,) = session.run(None, {session.get_inputs()[0].name: y[None, :]})
    ck = load_checkpoint(res.checkpoint_dir)
    np.testing.assert_allclose(p[0], predict_proba(ck, _features(ck, demo.paths[:1]))[0], atol=1e-4)


def test_held_out_part_is_scored_by_the_ensemble_and_report_shows_oof(tmp_path, demo):
    from soundclass.evaluation.evaluate import evaluate_training

    cfg = TrainConfig(model=E2E, n_jobs=1, epochs=2, folds=2, val_size=6, group_pattern=DEMO_GROUP_PATTERN)
    res = train(demo, cfg, out_dir=tmp_path, progress=False)
    split = json.loads((tmp_path / "split.json").read_text())
    rows = list(csv.DictReader((tmp_path / "oof.csv").open(encoding="utf-8")))
    assert sorted(r["path"] for r in rows) == sorted(split["train"])  # the held-out part is not in the folds
    assert [it.path for it in res.val_items] == split["val"]
    ck = load_checkpoint(res.checkpoint_dir)
    assert ck.model_name == "ensemble" and ck.clip_frames is not None
    members = [load_checkpoint(tmp_path / "folds" / f"fold_{k}" / "checkpoint") for k in range(2)]
    assert all(m.clip_frames == ck.clip_frames for m in members)  # one window for all
    feats = _features(ck, split["val"])
    with torch.no_grad():
        x = torch.as_tensor(feats[0][None, :, : ck.clip_frames])
        want = np.mean([torch.softmax(m.model(torch.as_tensor(
            (x.numpy() - m.norm_mean[:, None]) / m.norm_std[:, None])), -1).numpy() for m in members], axis=0)
        np.testing.assert_allclose(torch.softmax(ck.model(x), -1).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(res.val_proba, predict_proba(ck, feats), atol=1e-5)
    ev = evaluate_training(res)
    metrics = json.loads(ev.files["metrics"].read_text())
    assert metrics["split"] == "validation" and metrics["oof"]["n_folds"] == 2
    assert metrics["oof"]["n"] == len(split["train"]) and "macro_f1" in metrics["oof"]
    assert not metrics["oof"]["is_validation"]
    html = ev.files["report"].read_text(encoding="utf-8")
    assert "Out-of-fold predictions (2 folds)" in html and "oof.csv" in html


def test_folds_setting_and_errors(tmp_path, demo):
    assert settings()["folds"].kind is int
    with pytest.raises(ParameterError, match="folds"):
        TrainConfig(folds=-1)
    ds = Dataset(tuple(Item(it.path, it.label) for it in demo.items[:8]), demo.classes, demo.root)
    with pytest.raises(ParameterError, match="n_splits"):
        train(ds, TrainConfig(model=VEC, n_jobs=1, epochs=1, folds=9, val_size=0), out_dir=tmp_path,
              progress=False)


def test_train_model_choices_exclude_ensembles():
    from soundclass.cli import build_parser

    parser = build_parser()
    train_parser = next(a for a in parser._subparsers._group_actions[0].choices.values()
                        if a.prog.endswith(" train"))
    model_action = next(a for a in train_parser._actions if "--model" in a.option_strings)
    assert "cnn" in model_action.choices
    assert "ensemble" not in model_action.choices and "ensemble-vector" not in model_action.choices


def test_evaluate_serve_and_tta_take_the_sequence_ensemble(tmp_path, demo):
    from soundclass.apps.serve import App, CheckpointPredictor
    from soundclass.cli import main

    cfg = TrainConfig(model=E2E, n_jobs=1, epochs=1, folds=2, val_size=0, group_pattern=DEMO_GROUP_PATTERN)
    res = train(demo, cfg, out_dir=tmp_path / "run", progress=False)
    ck = load_checkpoint(res.checkpoint_dir)
    assert main(["evaluate", str(tmp_path / "run"), demo.root, "-o", str(tmp_path / "ev"), "--quiet",
                 "--tta", "3"]) == 0
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["model"] == "ensemble" and metrics["n"] == len(demo.paths) and metrics["tta"] == 3
    # test-time augmentation on the ensemble is the members' windows averaged as for any model
    feats = _features(ck, demo.paths[:4])
    p1, p3 = predict_proba(ck, feats), predict_proba(ck, feats, tta=3)
    np.testing.assert_allclose(p3.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(p1, p3, atol=1e-6)  # the clips are longer than a window: TTA changes something
    out = App(CheckpointPredictor(ck)).predict_bytes(Path(demo.paths[0]).read_bytes())
    assert out["model"] == "ensemble" and abs(sum(t["p"] for t in out["top"]) - 1.0) < 1e-4
    from soundclass.inference.calibration import apply_checkpoint_calibration

    shown = apply_checkpoint_calibration(ck, p1)  # the demo shows calibrated probabilities
    assert out["top"][0]["p"] == pytest.approx(float(shown[0].max()), abs=1e-4)


def test_resume_reuses_finished_members_and_refuses_other_folds(tmp_path, demo):
    cfg = TrainConfig(model=VEC, n_jobs=1, epochs=2, folds=2, val_size=0, group_pattern=DEMO_GROUP_PATTERN)
    first = train(demo, cfg, out_dir=tmp_path, progress=False)
    oof = (tmp_path / "oof.csv").read_text()
    again = train(demo, cfg, out_dir=tmp_path, progress=False, resume=True)
    assert (tmp_path / "oof.csv").read_text() == oof
    np.testing.assert_array_equal(first.val_proba, again.val_proba)
    with pytest.raises(ParameterError, match="fold assignment differs"):
        train(demo, cfg.replace(seed=5), out_dir=tmp_path, progress=False, resume=True)


def test_cli_train_folds_prints_the_out_of_fold_score(demo, tmp_path, capsys):
    from soundclass.cli import main

    out = tmp_path / "run"
    assert main(["train", str(demo.root), "-o", str(out), "--model", VEC, "--folds", "2",
                 "--val-size", "0", "--epochs", "2", "--jobs", "1", "--quiet",
                 "--group-pattern", DEMO_GROUP_PATTERN]) == 0
    text = capsys.readouterr().out
    assert "ensemble of 2 fold models: out-of-fold (" in text and "best epoch 0 of 0" not in text
    assert (out / "oof.csv").is_file() and (out / "report.html").stat().st_size > 0
    # the ensemble is calibrated like any single model (here on the out-of-fold clips)
    assert "temperature" in json.loads((out / "checkpoint" / "model.json").read_text())["calibration"]
