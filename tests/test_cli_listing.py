"""Every file a user's folder holds is listed or named: phone (M4A) and browser (WebM)
recordings beside WAVs through ``scan``, ``train`` and ``predict``, run as users run them
(``python -m soundclass`` in a subprocess, default jobs and executor, under a timeout that fails)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent / "reliability"))
from audio_corpus import av_bytes  # noqa: E402

TIMEOUT = 300  # seconds per command; a hang fails the test instead of stalling the suite
CLASSES = {"low": 330.0, "high": 1760.0}


def _tone(freq: float, sr: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(sr) / sr  # 1 s
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Two classes of 5 WAVs, a phone.m4a (AAC) in one, a browser.webm (Opus) in the other,
    and a notes.txt that is not audio."""
    root = tmp_path_factory.mktemp("phone") / "data"
    for k, (c, freq) in enumerate(CLASSES.items()):
        (root / c).mkdir(parents=True)
        for i in range(5):
            sf.write(root / c / f"{c}_{i}.wav", _tone(freq * (1 + 0.02 * i), 16000, 10 * k + i), 16000)
    (root / "low" / "phone.m4a").write_bytes(av_bytes(_tone(330.0, 44100, 99), 44100, "ipod", "aac"))
    (root / "high" / "browser.webm").write_bytes(
        av_bytes(_tone(1760.0, 48000, 98), 48000, "webm", "libopus"))
    (root / "low" / "notes.txt").write_text("recorded on a phone, 2024\n")
    return root


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH")) if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "soundclass", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"soundclass {' '.join(args)} did not finish in {TIMEOUT} s:\n{exc.stderr}")
    assert proc.returncode == 0, f"soundclass {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_scan_lists_phone_and_browser_files(folder, tmp_path):
    proc = _run("scan", str(folder), "-o", str(tmp_path / "scan"), cwd=tmp_path)
    with open(tmp_path / "scan" / "files.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert len(rows) == 12
    assert rows["phone.m4a"]["error"] == "" and rows["browser.webm"]["error"] == ""
    assert float(rows["phone.m4a"]["duration"]) == pytest.approx(1.0, abs=0.05)
    assert "1 file(s) skipped (not audio by extension or content): low/notes.txt" in proc.stdout
    summary = json.loads((tmp_path / "scan" / "summary.json").read_text())
    assert summary["files"] == 12 and summary["bad"] == 0
    assert summary["skipped_files"] == [str(folder / "low" / "notes.txt")]


def test_train_and_predict_cover_every_file(folder, tmp_path):
    run = tmp_path / "run"
    proc = _run("train", str(folder), "-o", str(run), "--model", "logmel-logreg", "--val-size", "0.4",
                cwd=tmp_path)
    assert "12 clips, 2 classes" in proc.stdout
    note = "1 file(s) skipped (not audio by extension or content): low/notes.txt"
    assert note in proc.stderr
    split = json.loads((run / "split.json").read_text())
    used = {os.path.basename(p) for p in split["train"] + split["val"]}
    assert {"phone.m4a", "browser.webm"} <= used and len(used) == 12 and not split["failed"]
    assert note in (run / "report.html").read_text(encoding="utf-8")

    sub = tmp_path / "sub.csv"
    proc = _run("predict", str(run), str(folder), "-o", str(sub), cwd=tmp_path)
    assert f"warning: {note}" in proc.stderr
    with open(sub, newline="") as fh:
        rows = {r["name"]: r["label"] for r in csv.DictReader(fh)}
    assert len(rows) == 12 and "notes.txt" not in rows
    assert rows["phone.m4a"] == "low" and rows["browser.webm"] == "high"
    assert "12 file(s), 0 failed" in proc.stdout
