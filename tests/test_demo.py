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


def test_run_demo_tiny(tmp_path):
    config = DemoConfig(n_per_class=6, n_test_per_class=2, n_sources=3, epochs=1, model="seed-cnn",
                        n_corrupt=1)
    lines = []
    res = run_demo(tmp_path / "demo", config=config, progress=False, n_jobs=1, log=lines.append)
    assert lines and all(isinstance(line, str) for line in lines)
    assert res.report.is_file() and res.report.parent == res.train_dir
    assert (res.checkpoint_dir / "model.json").is_file()
    metrics = json.loads((res.train_dir / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(res.val_metrics))
    assert metrics["n_failed"] == 1  # the corrupt training file is reported, not fatal
    with open(res.submission, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    n_test_files = 4 * 2 + 1
    assert len(rows) == n_test_files  # the corrupt test file still gets a row
    assert res.n_test == n_test_files - 1
    assert 0.0 <= res.test_accuracy <= 1.0
    failed = (res.run_dir / "submission.csv.failed.txt").read_text().splitlines()
    assert len(failed) == 1 and "corrupt" in failed[0]
