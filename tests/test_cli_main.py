"""The user-facing commands end to end on a tiny generated dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from soundclass.cli import build_parser, main
from soundclass.data.synth import DEMO_GROUP_PATTERN, make_demo_dataset

COMMANDS = ("train", "evaluate", "predict", "demo")


def _rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A seed-cnn trained for 3 epochs on 4 classes x 8 clips (grouped by source)."""
    root = tmp_path_factory.mktemp("cli")
    make_demo_dataset(root / "data", n_per_class=8, sr=16000, seed=0, n_sources=4)
    run = root / "run"
    code = main([
        "train", str(root / "data"), "-o", str(run), "--model", "seed-cnn", "--epochs", "3",
        "--group-pattern", DEMO_GROUP_PATTERN, "--val-size", "0.25", "--executor", "serial",
        "--jobs", "1", "--cache-dir", str(root / "cache"), "--quiet",
    ])
    assert code == 0
    return root, run


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: soundclass {command}")


def test_model_choices_come_from_registry(capsys):
    from soundclass.models import list_models
    from soundclass.models.ensemble import ENSEMBLE_NAMES

    with pytest.raises(SystemExit) as exc:
        main(["train", "data", "--model", "no-such-model"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    # every trainable model; the ensembles are built by --folds, not trained by name
    assert all(name in err for name in list_models() if name not in ENSEMBLE_NAMES.values())
    assert "'ensemble'" not in err and "ensemble-vector" not in err


def test_train_writes_consistent_run_folder(trained, capsys):
    root, run = trained
    for name in ("report.html", "metrics.json", "confusion.png", "history.png", "misclassified.csv",
                 "predictions.csv", "history.json", "split.json", "config.json",
                 "checkpoint/model.json", "checkpoint/model.safetensors"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    preds = _rows(run / "predictions.csv")
    assert sorted(r["path"] for r in preds) == sorted(split["val"])
    assert metrics["n"] == len(preds) == len(split["val"]) > 0
    assert metrics["accuracy"] == pytest.approx(np.mean([r["true"] == r["predicted"] for r in preds]))
    assert "feature_config" in (run / "report.html").read_text()  # the resolved config is shown
    wrong = _rows(run / "misclassified.csv")
    assert len(wrong) == sum(r["true"] != r["predicted"] for r in preds)
    # no source (group) on both sides of the split
    groups = {p: p.rsplit("_", 1)[0] for p in split["train"] + split["val"]}
    assert not {groups[p] for p in split["train"]} & {groups[p] for p in split["val"]}


def test_evaluate_reproduces_validation_metrics(trained, tmp_path):
    root, run = trained
    split = json.loads((run / "split.json").read_text())
    manifest = tmp_path / "val.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        for p in split["val"]:
            w.writerow([p, p.split("/")[-2]])
    out = tmp_path / "eval"
    assert main(["evaluate", str(run), str(manifest), "-o", str(out), "--executor", "serial",
                 "--jobs", "1", "--cache-dir", str(root / "cache"), "--quiet"]) == 0
    stored = json.loads((run / "metrics.json").read_text())
    again = json.loads((out / "metrics.json").read_text())
    for key in ("n", "accuracy", "macro_f1", "balanced_accuracy"):
        assert again[key] == pytest.approx(stored[key]), key
    assert again["confusion_matrix"] == stored["confusion_matrix"]
    assert again["log_loss"] == pytest.approx(stored["log_loss"], abs=1e-4)
    assert (out / "report.html").is_file() and (out / "history.png").is_file()


def test_predict_submission_with_corrupt_file(trained, tmp_path, capsys):
    root, run = trained
    test = make_demo_dataset(tmp_path / "test", n_per_class=2, sr=16000, seed=5, n_sources=2, n_corrupt=1)
    out = tmp_path / "submit.csv"
    capsys.readouterr()
    assert main(["predict", str(run / "checkpoint"), str(tmp_path / "test"), "-o", str(out),
                 "--executor", "serial", "--jobs", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    corrupt = [it.path for it in test.items if "corrupt" in it.path]
    assert corrupt and corrupt[0] in err
    text = out.read_text(encoding="utf-8")
    assert text.startswith("name,label\n")
    rows = _rows(out)
    assert [r["name"] for r in rows] == [it.name for it in test.items]  # every file, input order
    assert {r["label"] for r in rows} <= set(test.classes)
    with open(tmp_path / "submit.failed.csv", newline="", encoding="utf-8") as fh:
        listed = list(csv.reader(fh))
    assert listed[0] == ["path", "reason"]
    assert [r[0] for r in listed[1:]] == corrupt

    skipped = tmp_path / "skip.csv"
    assert main(["predict", str(run), str(tmp_path / "test"), "-o", str(skipped), "--top-k", "2",
                 "--proba", "--on-failure", "skip", "--executor", "serial", "--jobs", "1",
                 "--quiet"]) == 0
    rows = _rows(skipped)
    assert len(rows) == len(test) - len(corrupt)
    assert list(rows[0]) == ["name", "label", "label_2", *(f"proba_{c}" for c in test.classes)]


def test_predict_missing_input_is_a_clear_error(trained, tmp_path, capsys):
    _, run = trained
    code = main(["predict", str(run), str(tmp_path / "nope"), "-o", str(tmp_path / "s.csv")])
    assert code == 1
    assert "nope: no such file or directory" in capsys.readouterr().err


def test_train_config_resolution_order(tmp_path):
    from soundclass.cli.train import resolve_config

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"model": "seed-lstm", "epochs": 7, "lr": 0.01, "feature": {"n_mfcc": 13}}))
    parser = build_parser()
    args = parser.parse_args(["train", "d", "--config", str(cfg), "--epochs", "3", "--no-mixup",
                              "--balance", "--jobs", "2"])
    c = resolve_config(args)
    assert (c.model, c.epochs, c.lr, c.mixup_alpha, c.balance, c.n_jobs) == ("seed-lstm", 3, 0.01, 0.0, "sampler", 2)
    assert dict(c.feature) == {"n_mfcc": 13}
    assert c.spec_augment is None and c.batch_size is None  # not given: the model's default
    args = parser.parse_args(["train", "d"])
    assert resolve_config(args).model == "auto"  # the default: chosen by cross-validation
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"epoch": 3}))
    from soundclass.errors import ParameterError

    with pytest.raises(ParameterError, match="epoch"):
        resolve_config(parser.parse_args(["train", "d", "--config", str(bad)]))


def test_bad_numbers_rejected_by_parser(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["predict", "m", "x", "-o", "s.csv", "--tta", "0"])
    assert "--tta" in capsys.readouterr().err


def test_train_resume_continues_run(trained, tmp_path):
    import shutil

    root, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = json.loads((copy / "history.json").read_text())
    assert main([
        "train", str(root / "data"), "-o", str(copy), "--model", "seed-cnn", "--epochs", "3",
        "--group-pattern", DEMO_GROUP_PATTERN, "--val-size", "0.25", "--executor", "serial",
        "--jobs", "1", "--cache-dir", str(root / "cache"), "--quiet", "--resume",
    ]) == 0
    # a finished run resumes at its end: the epochs (and their timings) are the saved ones
    assert json.loads((copy / "history.json").read_text()) == before
    assert (copy / "report.html").is_file()
    assert json.loads((copy / "split.json").read_text()) == json.loads((run / "split.json").read_text())


def test_fsdd_speaker_grouped_train_and_predict(fsdd_dir, tmp_path):
    files = sorted(fsdd_dir.glob("*/*.wav"))
    chosen = [p for p in files if int(p.stem.rsplit("_", 1)[1]) < 2]  # 2 takes per digit and speaker
    manifest = tmp_path / "fsdd.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows([str(p), p.parent.name] for p in chosen)
    run = tmp_path / "run"
    assert main(["train", str(manifest), "-o", str(run), "--model", "seed-cnn", "--epochs", "3",
                 "--group-pattern", r"^\d+_(?P<group>[a-z]+)_", "--val-size", "0.34",
                 "--jobs", "1", "--executor", "serial", "--quiet"]) == 0
    split = json.loads((run / "split.json").read_text())
    speaker = {p: p.rsplit("/", 1)[1].split("_")[1] for p in split["train"] + split["val"]}
    assert not {speaker[p] for p in split["train"]} & {speaker[p] for p in split["val"]}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == len(split["val"]) and sum(map(sum, metrics["confusion_matrix"])) == metrics["n"]
    test = [str(p) for p in files if int(p.stem.rsplit("_", 1)[1]) == 10][:12]
    out = tmp_path / "submit.csv"
    assert main(["predict", str(run), *test, "-o", str(out), "--tta", "2", "--jobs", "1",
                 "--executor", "serial", "--quiet"]) == 0
    rows = _rows(out)
    assert [r["name"] for r in rows] == [p.rsplit("/", 1)[1] for p in test]
    assert {r["label"] for r in rows} <= {str(d) for d in range(10)}


def test_evaluate_unknown_class_is_a_clear_error(trained, tmp_path, capsys):
    import soundfile as sf

    _, run = trained
    (tmp_path / "pizza").mkdir()
    sf.write(tmp_path / "pizza" / "p.wav", np.zeros(1600, dtype=np.float32), 16000)
    assert main(["evaluate", str(run), str(tmp_path), "-o", str(tmp_path / "ev"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "label(s) pizza are not classes of the model" in err
    assert not (tmp_path / "ev").exists()


def test_train_without_validation_skips_report(trained, tmp_path, capsys):
    root, _ = trained
    run = tmp_path / "all"
    assert main(["train", str(root / "data"), "-o", str(run), "--model", "seed-cnn", "--epochs", "1",
                 "--val-size", "0", "--executor", "serial", "--jobs", "1",
                 "--cache-dir", str(root / "cache"), "--quiet"]) == 0
    assert "no validation split" in capsys.readouterr().out
    assert (run / "checkpoint" / "model.json").is_file()
    assert not (run / "report.html").exists()
