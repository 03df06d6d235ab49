"""The demo pipeline on a very small configuration."""

from __future__ import annotations

import csv
import json

import pytest

from soundclass.apps.demo import DEMO, QUICK_DEMO, DemoConfig, run_demo
from soundclass.errors import ParameterError


def test_demo_config_validation():
    with pytest.raises(ParameterError, match="n_sources=1"):
        DemoConfig(n_sources=1)
    with pytest.raises(ParameterError, match="epochs=0"):
        DemoConfig(epochs=0)
    assert QUICK_DEMO.n_per_class < DEMO.n_per_class and QUICK_DEMO.epochs < DEMO.epochs


def test_run_demo_small_learns_the_easy_task(tmp_path):
    # The demo sounds are easy: 8 clips per class and 4 epochs already separate them
    # (seeds 0-2 give 16/16 held-out files right; the seed is fixed here).
    config = DemoConfig(n_per_class=8, n_test_per_class=4, n_sources=4, epochs=4, batch_size=4,
                        model="seed-cnn", n_corrupt=1, seed=0)
    lines = []
    res = run_demo(tmp_path / "demo", config=config, progress=False, n_jobs=1, log=lines.append)
    assert lines and all(isinstance(line, str) for line in lines)
    assert res.report.is_file() and res.report.stat().st_size > 0
    assert res.report.parent == res.train_dir
    assert (res.checkpoint_dir / "model.json").is_file()
    metrics = json.loads((res.train_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(res.val_metrics))
    assert metrics["n_failed"] == 1  # the corrupt training file is reported, not fatal

    test_root = res.run_dir / "data" / "test"
    test_files = sorted(test_root.rglob("*.wav"))
    classes = sorted(p.name for p in test_root.iterdir() if p.is_dir())
    n_test_files = len(classes) * config.n_test_per_class + config.n_corrupt
    assert len(classes) == 4 and len(test_files) == n_test_files
    with open(res.submission, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # one row per held-out file (the corrupt one included), each with a known class
    assert sorted(r["name"] for r in rows) == sorted(p.name for p in test_files)
    assert all(r["label"] in classes for r in rows)
    assert res.n_test == n_test_files - config.n_corrupt
    truth = {p.name: p.parent.name for p in test_files if "corrupt" not in p.name}
    right = sum(r["label"] == truth[r["name"]] for r in rows if r["name"] in truth)
    assert res.test_accuracy == pytest.approx(right / len(truth))
    assert res.test_accuracy >= 0.9, f"demo accuracy {res.test_accuracy:.3f} on an easy task"
    with open(res.run_dir / "submission.failed.csv", newline="", encoding="utf-8") as fh:
        failed = list(csv.reader(fh))
    assert failed[0] == ["path", "reason"]
    assert len(failed) == 2 and "corrupt" in failed[1][0]
