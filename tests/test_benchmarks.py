"""The benchmark scripts run end to end on tiny inputs and print the rows the README quotes.

The figures themselves are not checked (these machines are shared and noisy);
what is checked is that every script still runs against the current library
(a changed default once broke one silently) and prints each row it promises.
"""

from __future__ import annotations

import importlib
import json
import sys

import pytest
import soundfile as sf

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


def _bench(name: str):
    return importlib.import_module(name)


def test_train_overhead_prints_both_tables(capsys):
    bench = _bench("train_overhead")
    assert bench.main(["--n-overhead", "32", "--overhead-seconds", "0.5", "--overhead-epochs", "1",
                       "--repeats", "1", "--n-mixed", "20", "--epochs", "1", "--skip", "real"]) == 0
    out = capsys.readouterr().out
    for row in ("| bare PyTorch", "| fit, augmentations off", "| fit, default augmentations",
                "| before: 90th percentile", "| after: "):
        assert row in out
    # the mixed-length table has a number in every column of both rows
    rows = [line for line in out.splitlines() if line.startswith(("| before", "| after"))]
    assert len(rows) == 2 and all(line.count("|") == 9 for line in rows)


def test_throughput_prints_every_path(capsys):
    bench = _bench("throughput")
    assert bench.main(["--n", "10", "--old-n", "4", "--torch-n", "4", "--waveform-n", "3",
                       "--rss-clips", "12", "--tutorial-n", "2", "--train-clips-overhead", "32",
                       "--repeat", "2"]) == 0
    out = capsys.readouterr().out
    for row in ("old torch path", "new torch path", "onnxruntime path, predict_paths end to end",
                "warm feature cache", "waveform ONNX graph alone", "bare onnxruntime forward",
                "vs old torch path", "peak RSS predicting 12 clips", "featurization: tutorial",
                "training samples/s", "bare PyTorch loop", "round 2/2", "median of 2 round(s)"):
        assert row in out, row
    assert "0 failed" in out


def test_train_overhead_crop_rules_per_held_out_group(tmp_path, capsys):
    from soundclass.data import synth

    synth.make_demo_dataset(tmp_path / "data", n_per_class=6, sr=8000, n_sources=3, seed=0)
    bench = _bench("train_overhead")
    r = bench.crop_rules(tmp_path / "data", r"^(?P<group>[a-z]+_s\d+)_")
    assert r["clips"] == 24 and len(r["folds"]) == 12  # 4 classes x 3 sources
    for old, new, bucket in r["folds"]:  # the default rule never crops longer than the old one
        assert 0.5 <= new <= old <= 10.0 and isinstance(bucket, bool)
    assert bench.main(["--skip", "overhead", "--skip", "mixed", "--datasets", str(tmp_path / "absent")]) == 0
    assert "absent or no known group pattern: skipped" in capsys.readouterr().out


def test_train_memory_prints_both_peaks(capsys):
    bench = _bench("train_memory")
    assert bench.main(["--n", "10", "--batch-size", "4", "--n-jobs", "1"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines()
            if line.startswith(("| in memory (no cache) |", "| streamed from the cache (cache_dir) |"))]
    assert len(rows) == 2 and all(line.count("MiB") == 3 for line in rows)
    assert "peak RSS ratio, in memory / streamed:" in out


@pytest.mark.parametrize("folds", [0, 2])
def test_accuracy_benchmark_writes_results(tmp_path, capsys, folds):
    from soundclass.data import synth

    data = tmp_path / "data"
    synth.make_demo_dataset(data, n_per_class=8, sr=8000, n_sources=4, seed=0)
    bench = _bench("accuracy")
    args = [str(data), "--models", "seed-cnn,mfcc-svm", "--epochs", "1", "--quiet", "-o", str(tmp_path / "out"),
            "--group-pattern", r"^(?P<group>[a-z]+_s\d+)_"]
    if folds:
        args += ["--folds", str(folds), "--average", "seed-cnn+mfcc-svm", "--average", "mfcc-svm+mfcc-svm"]
    assert bench.main(args) == 0
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    expected = ["seed-cnn", "mfcc-svm"] + (["seed-cnn + mfcc-svm", "mfcc-svm + mfcc-svm"] if folds else [])
    assert [r["model"] for r in result["rows"]] == expected
    out = capsys.readouterr().out
    assert "| seed-cnn |" in out and "| mfcc-svm |" in out
    if not folds:
        return
    # the per-fold table: one accuracy per held-out fold, then mean +- std, for every row
    per_fold = [line for line in out.splitlines() if line.startswith("| ") and line.count("|") == folds + 3]
    assert [line.split("|")[1].strip() for line in per_fold[1:]] == expected
    assert all(len(r["fold_accuracy"]) == folds for r in result["rows"])
    # a model averaged with itself is the model: the clips of every fold are matched up
    assert result["rows"][3]["fold_accuracy"] == result["rows"][1]["fold_accuracy"]
    # --reuse takes the rows already run (same folds and seed) and trains only what is new
    assert bench.main(args[:2] + ["seed-cnn,mfcc-svm,logmel-logreg", "--reuse"] + args[3:]) == 0
    err = capsys.readouterr().err
    assert "seed-cnn: reused" in err and "mfcc-svm: reused" in err and "logmel-logreg: 2 folds" in err
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["seed-cnn", "mfcc-svm", "logmel-logreg", *expected[2:]]
    assert rows[0]["fold_accuracy"] == result["rows"][0]["fold_accuracy"]


def test_throughput_probe_model_prints_the_backbone_table(capsys):
    bench = _bench("throughput")
    assert bench.main(["--model", "aisfx-probe", "--n", "6", "--repeat", "1", "--probe-train-clips", "4",
                       "--n-jobs", "1", "--probe-startup-clips", "2"]) == 0
    out = capsys.readouterr().out
    for row in ("aisfx-probe predict_paths end to end", "bare onnxruntime forward of the backbone, 1 session",
                "1 session x 1 thread", "decode + backbone input", "round 1/1", "end to end / bare backbone",
                "(18 backbone inputs, 3.0 per clip)", "CPU seconds per clip", "0 failed"):
        assert row in out, row


def test_mission_scale_prints_both_commands(tmp_path, capsys):
    """The README's train and predict with their defaults (a short --time-budget), through the CLI."""
    bench = _bench("mission_scale")
    assert bench.main(["--classes", "3", "--per-class", "6", "--test", "5", "--min-seconds", "1",
                       "--max-seconds", "2", "--time-budget", "5", "--timeout", "600", "--gen-jobs", "1",
                       "--keep", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    for row in ("generated 18 training clips (3 classes) + 5 test clips", "auto: chose ", "clips/s, decoding",
                "| train | 18 |", "| predict | 5 |", "CPU s (process tree)", "submission rows: 5 of 5", "targets: train"):
        assert row in out, row
    with sf.SoundFile(next((tmp_path / "m" / "test").glob("*.wav"))) as f:  # shaped like the real set
        assert (f.samplerate, f.channels, f.subtype) == (44100, 2, "PCM_16") and 1.0 <= f.frames / 44100 <= 2.0


def test_backbone_precision_prints_every_precision(tmp_path, capsys):
    from soundclass.data import synth

    synth.make_demo_dataset(tmp_path / "demo", n_per_class=4, sr=16000, n_sources=2, seed=0)
    bench = _bench("backbone_precision")
    assert bench.main([str(tmp_path / "demo"), "--group-pattern", synth.DEMO_GROUP_PATTERN, "--folds", "2",
                       "--torch-blocks", "4", "--rate-blocks", "4"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| demo |")]
    assert [r.split("|")[2].strip() for r in rows] == ["float32", "int8-dynamic", "int8-static"]
    assert "| demo | float32 |" in rows[0] and "+0.00 pt | 0 (" in rows[0]
    assert "1-thread blocks/s" in out
    assert bench.main([str(tmp_path / "absent")]) == 0
    assert "absent or no known group pattern: skipped" in capsys.readouterr().out
