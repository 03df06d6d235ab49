"""The demo over real checkpoints: loading (with file-system reasons), inference, the CLI."""

from __future__ import annotations

import base64
import builtins
import errno
import http.client
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_signal
from soundclass.apps.serve import make_app
from soundclass.apps.serve.predictor import check_checkpoint_path
from soundclass.errors import CheckpointError
from test_serve_common import PNG_MAGIC, TIMEOUT, LiveServer, save_tiny_checkpoint, wav_bytes


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt", "seed-cnn")


@pytest.mark.parametrize("model_name", ["seed-cnn", "seed-lstm"])
def test_real_checkpoint_predicts_five_classes(model_name, tmp_path):
    from soundclass.checkpoint.format import load_checkpoint
    from soundclass.extraction.extract import extract_file
    from soundclass.inference.predictor import predict_proba

    ckpt_dir = save_tiny_checkpoint(tmp_path / "ckpt", model_name)
    server = LiveServer(make_app(ckpt_dir, max_upload_bytes=1_000_000, max_seconds=3.0))
    try:
        status, info = server.json("GET", "/api/info")
        assert info["model"] == model_name and info["classes"] == list("abcde") and info["sr"] == 8000
        data = wav_bytes(make_signal(sr=22050, seconds=1.0, channels=2), 22050, subtype="FLOAT")
        status, out = server.json("POST", "/api/predict", data, {"Content-Type": "audio/wav"})
        assert status == 200, out
        assert sorted(t["label"] for t in out["top"]) == list("abcde")
        assert sum(t["p"] for t in out["top"]) == pytest.approx(1.0, abs=1e-5)
        # the same probabilities as the batch path (file -> extract_file -> predict_proba)
        (tmp_path / "clip.wav").write_bytes(data)
        ckpt = load_checkpoint(ckpt_dir)
        batch = predict_proba(ckpt, [extract_file(tmp_path / "clip.wav", ckpt.feature)])[0]
        served = {t["label"]: t["p"] for t in out["top"]}
        np.testing.assert_allclose([served[c] for c in ckpt.classes], batch, rtol=1e-4, atol=1e-6)
        assert out["channels"] == 2
        assert base64.b64decode(out["mel_png"]).startswith(PNG_MAGIC)
    finally:
        server.close()


def test_clip_too_short_for_the_model_is_422(tmp_path):
    server = LiveServer(make_app(save_tiny_checkpoint(tmp_path / "ckpt", "seed-lstm")))
    try:  # 300 samples give 5 frames, deltas need 9
        status, out = server.json("POST", "/api/predict", wav_bytes(np.full(300, 0.1, np.float32), 8000))
        assert status == 422 and "at least 9 frames" in out["error"]
    finally:
        server.close()


def test_real_recordings_through_the_api(fsdd_dir, donateacry_dir, checkpoint_dir):
    """A few real clips (8 kHz digits, baby cries in other formats/rates) posted as uploads."""
    from soundclass.data.dataset import list_audio

    paths = list_audio(fsdd_dir)[::1500] + list_audio(donateacry_dir)[::230]
    server = LiveServer(make_app(checkpoint_dir, max_seconds=3.0))
    try:
        for path in paths:
            info = sf.info(path)
            status, out = server.json("POST", "/api/predict", Path(path).read_bytes())
            assert status == 200, (path, out)
            assert out["sr"] == info.samplerate and out["duration"] == pytest.approx(info.duration, abs=1e-3)
            assert out["truncated"] == (info.duration > 3.0)
            assert sum(t["p"] for t in out["top"]) == pytest.approx(1.0, abs=1e-5)
    finally:
        server.close()


# --------------------------------------------------------------------------- start-up errors


def test_make_app_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="nothing: not found"):
        make_app(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint here"):
        make_app(tmp_path / "empty")


def test_symlink_loop_is_named(tmp_path, checkpoint_dir):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(CheckpointError, match=r"a: symlink loop"):
        make_app(tmp_path / "a")
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint").symlink_to(run / "checkpoint")  # a loop one level down
    with pytest.raises(CheckpointError, match=r"checkpoint: symlink loop"):
        make_app(run)


def test_permission_denied_is_named(tmp_path, checkpoint_dir, monkeypatch):
    """The reason the OS gives (tests run as root, so the refusal is injected at ``open``)."""
    real_open = builtins.open
    locked = checkpoint_dir / "model.json"

    def open_(file, *args, **kwargs):
        if Path(file) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    with pytest.raises(CheckpointError, match=r"model\.json: permission denied"):
        check_checkpoint_path(checkpoint_dir)
    monkeypatch.undo()
    assert check_checkpoint_path(checkpoint_dir) == checkpoint_dir


# --------------------------------------------------------------------------- the CLI


def test_cli_serve_subprocess(checkpoint_dir):
    """``soundclass serve MODEL --port 0`` prints its URL and answers /api/info."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundclass", "serve", str(checkpoint_dir), "--port", "0", "--quiet",
         "--max-upload-mb", "2", "--max-seconds", "4", "--workers", "1", "--queue", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(1)), timeout=TIMEOUT)
        conn.request("GET", "/api/info")
        info = json.loads(conn.getresponse().read())
        conn.close()
        assert info["max_upload_bytes"] == 2 * 2**20 and info["max_seconds"] == 4.0
    finally:
        proc.terminate()
        proc.wait(TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()


@pytest.mark.parametrize(("flags", "message"), [(["--max-upload-mb", "0"], "max_upload_bytes=0"),
                                                (["--workers", "0"], "workers=0"),
                                                (["--queue", "-1"], "queue=-1")])
def test_cli_serve_bad_limit_is_a_clear_error(checkpoint_dir, capsys, flags, message):
    from soundclass.cli import main

    assert main(["serve", str(checkpoint_dir), *flags]) == 1
    assert message in capsys.readouterr().err


def test_cli_serve_unreadable_checkpoint_is_a_clear_error(tmp_path, capsys):
    from soundclass.cli import main

    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert main(["serve", str(tmp_path / "loop")]) == 1
    assert "symlink loop" in capsys.readouterr().err
