"""The README's commands, run the way users run them.

Each test runs the real command line in a subprocess with its defaults (no
``--jobs``, no ``--executor``, ``--model auto`` with its default candidates;
only ``--time-budget`` is shortened) on data shaped like a competition's: 10
classes x 8 clips of 3-5 s, 44.1 kHz stereo 16-bit WAV, recordings named in
the file names, one corrupt clip.  Every command runs under a hard timeout
that fails the test: a hang is a failure here, never a stuck suite.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from soundclass.data.synth import make_food_dataset

#: Seconds any one command may take before the test fails (they take well under this).
COMMAND_TIMEOUT = 600
#: The README's --group-pattern of its typical competition run (one group per video of each food).
README_GROUP_PATTERN = r"^(?P<group>{class}_\d+)_"
#: auto's budget in these runs (the default is longer; candidates that do not fit are skipped).
BUDGET = "45"


def soundclass(*args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    """``soundclass ARGS`` in a subprocess, as a user types it; fails the test on a hang."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    try:
        proc = subprocess.run([sys.executable, "-m", "soundclass", *args], capture_output=True,
                              text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"soundclass {' '.join(args)} did not finish in {timeout} s; stderr:\n{(err or '')[-3000:]}")
    assert proc.returncode == 0, f"soundclass {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def food(tmp_path_factory) -> tuple[Path, Path]:
    """``train/`` (10 foods x 8 clips, 4 recordings each, one corrupt clip) and ``test/``
    (2 new recordings per food, unlabelled, plus a corrupt clip)."""
    root = tmp_path_factory.mktemp("food")
    train = root / "train"
    make_food_dataset(train, n_classes=10, n_per_class=8, seconds=(3.0, 5.0), n_sources=4, seed=1)
    (train / "aloe" / "aloe_09_000.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt broken")
    held = make_food_dataset(root / "held", n_classes=10, n_per_class=2, seconds=(3.0, 5.0),
                             n_sources=2, seed=2)
    test = root / "test"
    test.mkdir()
    for k, item in enumerate(held.items):
        os.replace(item.path, test / f"{k:03d}.wav")
    (test / "corrupt.wav").write_bytes(b"\x00" * 100)
    return train, test


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _check_run(run: Path, proc: subprocess.CompletedProcess) -> dict:
    assert (run / "checkpoint" / "model.json").is_file() and (run / "report.html").is_file()
    board = json.loads((run / "auto.json").read_text())
    assert "auto" in proc.stderr + proc.stdout  # the leaderboard and the choice are shown
    assert "aloe_09_000.wav" in proc.stderr + proc.stdout  # the corrupt clip is named, not fatal
    return board


def _check_submission(out: Path, test: Path) -> None:
    rows = _rows(out)
    assert sorted(r["name"] for r in rows) == sorted(p.name for p in test.iterdir())  # a row for every file
    failed = {Path(r["path"]).name: r["reason"] for r in _rows(out.with_name(out.stem + ".failed.csv"))}
    assert list(failed) == ["corrupt.wav"] and failed["corrupt.wav"]  # named, with its reason
    assert {r["label"] for r in rows} <= {p.name for p in (test.parent / "train").iterdir()}


def test_train_then_predict_with_defaults(food, tmp_path):
    """``soundclass train DIR -o RUN`` then ``soundclass predict RUN DIR -o submit.csv``: nothing else."""
    train, test = food
    run = tmp_path / "run"
    proc = soundclass("train", str(train), "-o", str(run), "--time-budget", BUDGET)
    _check_run(run, proc)
    soundclass("predict", str(run), str(test), "-o", str(tmp_path / "submit.csv"))
    _check_submission(tmp_path / "submit.csv", test)


def test_the_readme_competition_commands(food, tmp_path):
    """The README's typical run: scan, show, train with groups and a cache, predict, evaluate,
    export, serve; each command as printed there, with its defaults."""
    train, test = food
    run, cache = tmp_path / "runs" / "auto", tmp_path / ".cache"
    assert f"--group-pattern '{README_GROUP_PATTERN}'" in (Path(__file__).parents[1] / "README.md").read_text()
    scan = soundclass("scan", str(train))
    assert "aloe_09_000.wav" in scan.stdout + scan.stderr
    soundclass("show", str(train / "aloe" / "aloe_00_000.wav"), "-o", str(tmp_path / "aloe.png"))
    assert (tmp_path / "aloe.png").stat().st_size > 0
    proc = soundclass("train", str(train), "-o", str(run), "--group-pattern", README_GROUP_PATTERN,
                      "--cache-dir", str(cache), "--time-budget", BUDGET)
    board = _check_run(run, proc)
    split = json.loads((run / "split.json").read_text())
    assert split  # a grouped split was written

    submit = tmp_path / "submit.csv"
    soundclass("predict", str(run), str(test), "-o", str(submit))
    _check_submission(submit, test)
    again = tmp_path / "submit_cached.csv"  # with the cache, as the README's run would go on
    soundclass("predict", str(run), str(test), "-o", str(again), "--cache-dir", str(cache))
    assert _rows(again) == _rows(submit)

    evaluated = soundclass("evaluate", str(run), str(train), "-o", str(tmp_path / "eval"))
    assert "accuracy" in evaluated.stdout + evaluated.stderr

    onnx = tmp_path / "model.onnx"
    soundclass("export", str(run), "-o", str(onnx))
    _check_export(onnx, run, test)
    _check_serve(run, test)
    assert board


def _check_export(onnx: Path, run: Path, test: Path) -> None:
    import onnxruntime as ort

    model = json.loads((run / "checkpoint" / "model.json").read_text())
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    sr = int(json.loads(meta["feature"])["sr"]) if "feature" in meta else int(model["feature"]["sr"])
    import librosa

    y, _ = librosa.load(test / "000.wav", sr=sr, res_type="soxr_hq")
    name = session.get_inputs()[0].name
    proba = session.run(None, {name: y[None, :].astype(np.float32)})[0]
    assert proba.shape[-1] == len(model["classes"]) and np.isclose(proba.sum(), 1.0, atol=1e-4)


def _check_serve(run: Path, test: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", "soundclass", "serve", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        line = ""
        while time.monotonic() < deadline and not re.search(r"http://127\.0\.0\.1:\d+/", line):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                pytest.fail(f"serve exited: {proc.stderr.read()[-3000:]}")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/api/predict", body=(test / "000.wav").read_bytes(),
                     headers={"Content-Type": "audio/wav"})
        response = conn.getresponse()
        body = json.loads(response.read())
        conn.close()
        assert response.status == 200, body
        assert len(body["top"]) >= 1
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()

