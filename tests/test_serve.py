"""The web demo: decoding uploads, the HTTP API on a real loopback server, the page in Chromium."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import make_signal
from soundclass.apps.serve import (
    TOP_K,
    App,
    RequestError,
    decode_audio,
    make_app,
    make_server,
    parse_multipart,
)
from soundclass.config import FeatureConfig
from soundclass.errors import AudioDecodeError, ParameterError

CLASSES = ("apple", "carrots", "chips", "gummies", "pickles", "soup", "wings")
FEATURE = FeatureConfig(kind="logmel", sr=8000, n_fft=256, hop_length=64, n_mels=32)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 20.0  # seconds, every network operation of these tests


class FakePredictor:
    """A deterministic stand-in for a model: softmax of the signal's energy in 7 bands.

    Records whether two predictions ever overlap (they must not: the app locks).
    """

    model_name = "fake-bands"
    classes = CLASSES
    feature = FEATURE

    def __init__(self, *, fail: bool = False, delay: float = 0.0):
        self.fail = fail
        self.delay = delay
        self.calls = 0
        self.active = 0
        self.overlapped = False
        self.seen_sizes: list[int] = []
        self.seen_peaks: list[float] = []

    def predict(self, y: np.ndarray) -> np.ndarray:
        self.active += 1
        self.overlapped |= self.active > 1
        try:
            self.calls += 1
            self.seen_sizes.append(y.size)
            self.seen_peaks.append(float(np.max(np.abs(y))))
            if self.delay:
                time.sleep(self.delay)
            if self.fail:
                raise RuntimeError("model exploded")
            spectrum = np.abs(np.fft.rfft(y.astype(np.float64)))
            energy = np.array([b.sum() for b in np.array_split(spectrum, len(CLASSES))])
            z = 4.0 * np.log1p(energy)
            e = np.exp(z - z.max())
            return e / e.sum()
        finally:
            self.active -= 1


def wav_bytes(y: np.ndarray, sr: int, *, subtype: str = "PCM_16", format: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, subtype=subtype, format=format)
    return buf.getvalue()


class Server:
    """An :class:`App` served on 127.0.0.1 (port 0) in a thread."""

    def __init__(self, app: App):
        self.app = app
        self.httpd = make_server(app, host="127.0.0.1", port=0, quiet=True)
        self.host, self.port = self.httpd.server_address[:2]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, hdrs, data = self.request(method, path, body, headers)
        assert hdrs["Content-Type"].startswith("application/json"), hdrs
        return status, json.loads(data)

    def raw(self, payload: bytes) -> bytes:
        """Send raw bytes and read the whole answer (the server closes the connection)."""
        with socket.create_connection((self.host, self.port), timeout=TIMEOUT) as sock:
            sock.sendall(payload)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def serve_app():
    """Factory: ``serve_app(predictor, **limits) -> Server``; every server is shut down."""
    servers = []

    def start(predictor=None, **limits) -> Server:
        server = Server(App(predictor or FakePredictor(), **limits))
        servers.append(server)
        return server

    yield start
    for s in servers:
        s.close()


@pytest.fixture
def server(serve_app):
    return serve_app(max_upload_bytes=200_000, max_seconds=2.0)


def _status_line(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json_body(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


# --------------------------------------------------------------------------- decode_audio


def test_decode_wav_mono_and_stereo():
    y = make_signal(sr=8000, seconds=0.5)
    clip = decode_audio(wav_bytes(y, 8000), max_seconds=5.0)
    assert clip.sr == 8000 and clip.channels == 1 and not clip.truncated
    assert clip.duration == pytest.approx(0.5)
    np.testing.assert_allclose(clip.y, y, atol=1 / 32768 + 1e-7)

    st = make_signal(sr=8000, seconds=0.5, channels=2)
    clip = decode_audio(wav_bytes(st, 8000, subtype="FLOAT"), max_seconds=5.0)
    assert clip.channels == 2 and clip.y.shape == (4000,)
    np.testing.assert_allclose(clip.y, st.mean(axis=1), atol=1e-7)


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", "PCM_16"), ("WAV", "PCM_U8"), ("OGG", "VORBIS"), ("AIFF", "PCM_24")])
def test_decode_other_formats(fmt, subtype):
    y = make_signal(sr=16000, seconds=0.3)
    clip = decode_audio(wav_bytes(y, 16000, subtype=subtype, format=fmt))
    assert clip.sr == 16000 and clip.y.dtype == np.float32
    assert abs(clip.y.size - y.size) <= 1024  # Vorbis may pad a little


def test_decode_keeps_only_first_max_seconds():
    data = wav_bytes(make_signal(sr=8000, seconds=3.0), 8000)
    clip = decode_audio(data, max_seconds=1.25)
    assert clip.truncated and clip.y.size == 10000
    assert clip.duration == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty upload"),
        (b"this is not audio at all, just some text" * 10, "not a readable audio file"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "not a readable audio file"),
    ],
)
def test_decode_bad_bytes_give_reason(data, reason):
    with pytest.raises(AudioDecodeError, match=reason) as info:
        decode_audio(data)
    assert info.value.path is None


def test_decode_truncated_file_keeps_what_is_there():
    data = wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)
    clip = decode_audio(data[: 44 + 2 * 1000])  # header says 8000 frames, 1000 present
    assert clip.y.size == 1000 and clip.duration == pytest.approx(0.125) and not clip.truncated


def test_decode_rejects_zero_frames():
    with pytest.raises(AudioDecodeError, match="no audio samples"):
        decode_audio(wav_bytes(np.zeros(0, np.float32), 8000))


def test_decode_rejects_non_finite_samples():
    y = make_signal(sr=8000, seconds=0.2)
    y[100] = np.nan
    with pytest.raises(AudioDecodeError, match="non-finite"):
        decode_audio(wav_bytes(y, 8000, subtype="FLOAT"))


def test_decode_rejects_bad_max_seconds():
    with pytest.raises(ParameterError, match="max_seconds"):
        decode_audio(b"x", max_seconds=0)


# --------------------------------------------------------------------------- multipart


def _multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "----soundclassBoundary7") -> tuple[bytes, str]:
    out = b""
    for name, filename, content in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


def test_parse_multipart_picks_the_file_field_exactly():
    payload = bytes(range(256)) * 3 + b"\r\n--not-the-boundary\r\n\r\n"
    body, ctype = _multipart([("comment", None, b"hello"), ("file", "x.wav", payload)])
    assert parse_multipart(body, ctype) == payload


def test_parse_multipart_first_file_otherwise():
    body, ctype = _multipart([("comment", None, b"hello"), ("upload", "a.wav", b"AAA"), ("other", "b.wav", b"BBB")])
    assert parse_multipart(body, ctype) == b"AAA"


@pytest.mark.parametrize(
    ("body", "ctype", "match"),
    [
        (b"--b\r\nno header end", "multipart/form-data; boundary=b", "no header block"),
        (b"nothing here", "multipart/form-data; boundary=b", "opening boundary"),
        (b"--b--\r\n", "multipart/form-data; boundary=b", "no part"),
        (b"--b\r\n", "multipart/form-data", "boundary"),
    ],
)
def test_parse_multipart_errors(body, ctype, match):
    with pytest.raises(RequestError, match=match) as info:
        parse_multipart(body, ctype)
    assert info.value.status == 400


# --------------------------------------------------------------------------- App


def test_app_rejects_bad_limits():
    with pytest.raises(ParameterError, match="max_upload_bytes"):
        App(FakePredictor(), max_upload_bytes=0)
    with pytest.raises(ParameterError, match="max_seconds"):
        App(FakePredictor(), max_seconds=-1.0)


def test_app_resamples_to_the_model_rate():
    predictor = FakePredictor()
    out = App(predictor).predict_bytes(wav_bytes(make_signal(sr=22050, seconds=0.5), 22050))
    assert predictor.seen_sizes == [4000]  # 0.5 s at FEATURE.sr = 8000
    assert out["sr"] == 22050 and out["duration"] == pytest.approx(0.5)


# --------------------------------------------------------------------------- HTTP API


def test_page_and_static_files(server):
    status, headers, body = server.request("GET", "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert b'id="file-input"' in body and b"/static/app.js" in body
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("recorder-worklet.js", "text/javascript")]:
        status, headers, body = server.request("GET", f"/static/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind) and len(body) > 100


@pytest.mark.parametrize("path", ["/static/../serve.py", "/static/%2e%2e/serve.py", "/static/", "/nope", "/static/index.css"])
def test_unknown_paths_are_404(server, path):
    status, body = server.json("GET", path)
    assert status == 404 and "no such page" in body["error"]


def test_info(server):
    status, info = server.json("GET", "/api/info")
    assert status == 200
    assert info == {
        "model": "fake-bands", "classes": list(CLASSES), "n_classes": 7, "sr": 8000,
        "max_upload_bytes": 200_000, "max_seconds": 2.0, "top_k": 5,
    }


def test_predict_valid_wav(server):
    data = wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)  # at the model's rate: no resampling
    status, out = server.json("POST", "/api/predict", data, {"Content-Type": "audio/wav"})
    assert status == 200, out
    assert len(out["top"]) == TOP_K
    labels = [t["label"] for t in out["top"]]
    assert len(set(labels)) == TOP_K and set(labels) <= set(CLASSES)
    ps = [t["p"] for t in out["top"]]
    assert ps == sorted(ps, reverse=True) and all(0 <= p <= 1 for p in ps)
    # the server's ranking is the model's
    expected = FakePredictor().predict(sf.read(io.BytesIO(data), dtype="float32")[0])
    assert labels == [CLASSES[i] for i in np.argsort(-expected, kind="stable")[:TOP_K]]
    np.testing.assert_allclose(ps, np.sort(expected)[::-1][:TOP_K], rtol=1e-6)
    assert out["sr"] == 8000 and out["channels"] == 1 and out["duration"] == pytest.approx(1.0)
    assert out["truncated"] is False
    for key in ("waveform_png", "mel_png"):
        png = base64.b64decode(out[key])
        assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_predict_multipart_upload(server):
    body, ctype = _multipart([("file", "clip.wav", wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))])
    status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
    assert status == 200, out
    assert len(out["top"]) == TOP_K and out["duration"] == pytest.approx(0.5)


def test_long_clip_is_analysed_on_its_first_max_seconds(server):
    data = wav_bytes(make_signal(sr=8000, seconds=5.0), 8000)
    status, out = server.json("POST", "/api/predict", data)
    assert status == 200, out
    assert out["truncated"] is True
    assert out["duration"] == pytest.approx(5.0) and out["analysed_seconds"] == pytest.approx(2.0)
    assert server.app.predictor.seen_sizes[-1] == 16000


def test_path_like_file_name_is_never_used(server, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # A real WAV on disk named by the client, but garbage sent: the answer must be about the garbage.
    victim = tmp_path / "victim.wav"
    victim.write_bytes(wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))
    before = victim.stat()
    for name in ("../../etc/passwd", str(victim), "../" * 8 + str(victim).lstrip("/")):
        body, ctype = _multipart([("file", name, b"garbage, not audio" * 20)])
        status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
        assert status == 400 and "not a readable audio file" in out["error"]
        assert name not in out["error"] and "passwd" not in out["error"]
    # Valid audio under a path-like name: analysed, and nothing is written anywhere.
    target = tmp_path / "written.wav"
    for name in ("../../etc/passwd", str(target)):
        body, ctype = _multipart([("file", name, wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))])
        status, out = server.json("POST", "/api/predict", body, {"Content-Type": ctype})
        assert status == 200 and len(out["top"]) == TOP_K
        assert "passwd" not in json.dumps(out)
    assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == ["victim.wav"]
    after = victim.stat()
    assert (after.st_mtime_ns, after.st_size) == (before.st_mtime_ns, before.st_size)


def test_too_large_upload_is_413_without_reading(server):
    # Announce 1 GB, send nothing: the answer must come at once.
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        "Content-Type: audio/wav\r\nContent-Length: 1000000000\r\n\r\n"
    ).encode()
    answer = server.raw(head)
    assert _status_line(answer) == 413
    err = _json_body(answer)["error"]
    assert "1000000000 bytes" in err and "200000" in err


def test_too_large_body_is_413(server):
    status, out = server.json("POST", "/api/predict", b"\0" * 200_001)
    assert status == 413 and "larger than the limit" in out["error"]
    status, _ = server.json("POST", "/api/predict", wav_bytes(make_signal(sr=8000, seconds=0.5), 8000))
    assert status == 200  # still serving


@pytest.mark.parametrize(
    ("headers", "status", "match"),
    [
        ("", 411, "Content-Length required"),
        ("Transfer-Encoding: chunked\r\n", 411, "chunked"),
        ("Content-Length: ten\r\n", 400, "not an integer"),
        ("Content-Length: -5\r\n", 400, "negative"),
    ],
)
def test_bad_content_length(server, headers, status, match):
    head = f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n{headers}\r\n"
    answer = server.raw(head.encode())
    assert _status_line(answer) == status
    assert match in _json_body(answer)["error"]


def test_short_body_is_400(server):
    head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Length: 100\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        sock.sendall(head + b"x" * 10)
        sock.shutdown(socket.SHUT_WR)
        answer = b"".join(iter(lambda: sock.recv(65536), b""))
    assert _status_line(answer) == 400 and "10 of 100 bytes" in _json_body(answer)["error"]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"garbage bytes that are no audio" * 4, "not a readable audio file"),
        (b"", "empty upload"),
    ],
)
def test_bad_audio_is_400_with_reason(server, data, match):
    status, out = server.json("POST", "/api/predict", data, {"Content-Type": "audio/wav"})
    assert status == 400 and match in out["error"]


def test_nan_audio_is_400(server):
    y = make_signal(sr=8000, seconds=0.2)
    y[5] = np.inf
    status, out = server.json("POST", "/api/predict", wav_bytes(y, 8000, subtype="FLOAT"))
    assert status == 400 and "non-finite" in out["error"]


def test_server_survives_a_failing_model(serve_app):
    predictor = FakePredictor(fail=True)
    server = serve_app(predictor)
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    status, out = server.json("POST", "/api/predict", data)
    assert status == 500 and "model exploded" in out["error"]
    predictor.fail = False
    status, out = server.json("POST", "/api/predict", data)
    assert status == 200 and len(out["top"]) == TOP_K


def test_foreign_host_and_origin_are_refused(server):
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    status, out = server.json("POST", "/api/predict", data, {"Host": "evil.example:8000"})
    assert status == 403 and "loopback" in out["error"]
    status, out = server.json("POST", "/api/predict", data, {"Origin": "http://evil.example"})
    assert status == 403 and "cross-origin" in out["error"]
    ok = {"Origin": f"http://127.0.0.1:{server.port}"}
    assert server.json("POST", "/api/predict", data, ok)[0] == 200
    assert server.json("GET", "/api/info", None, {"Host": f"localhost:{server.port}"})[0] == 200


def test_concurrent_requests_use_the_model_one_at_a_time(serve_app):
    predictor = FakePredictor(delay=0.05)
    server = serve_app(predictor)
    data = wav_bytes(make_signal(sr=8000, seconds=0.3), 8000)
    statuses = []

    def post():
        statuses.append(server.json("POST", "/api/predict", data)[0])

    threads = [threading.Thread(target=post) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert statuses == [200] * 4 and predictor.calls == 4
    assert not predictor.overlapped


def test_make_server_rejects_bad_port():
    with pytest.raises(ParameterError, match="port"):
        make_server(App(FakePredictor()), port=70000)


# --------------------------------------------------------------------------- a real checkpoint


def _save_tiny_checkpoint(out: Path, model_name: str) -> Path:
    """A tiny untrained checkpoint with 5 classes (weights seeded)."""
    import torch

    from soundclass.inference.checkpoint import save_checkpoint
    from soundclass.models import create_model

    torch.manual_seed(0)
    if model_name == "seed-cnn":  # vector model, mean-pooled mel
        feature = FeatureConfig(kind="melspectrogram", sr=8000, n_fft=256, hop_length=64, n_mels=32, pooling="mean")
        kwargs, extra = {"height": 8, "width": 4}, {}
    else:  # sequence model, windowed and standardized
        feature = FeatureConfig(kind="mfcc", sr=8000, n_fft=256, hop_length=64, n_mels=32, n_mfcc=13, deltas=2)
        kwargs = {}
        n = feature.n_features
        extra = {"norm_mean": np.zeros(n, np.float32), "norm_std": np.ones(n, np.float32), "clip_frames": 40}
    model = create_model(model_name, n_classes=5, n_features=feature.n_features, **kwargs)
    return save_checkpoint(out, model, model_name=model_name, model_kwargs=kwargs, feature=feature,
                           classes=["a", "b", "c", "d", "e"], train_config={}, **extra)


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory) -> Path:
    return _save_tiny_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt", "seed-cnn")


@pytest.mark.parametrize("model_name", ["seed-cnn", "seed-lstm"])
def test_real_checkpoint_predicts_five_classes(model_name, tmp_path):
    from soundclass.extraction.extract import extract_file
    from soundclass.inference.checkpoint import load_checkpoint
    from soundclass.inference.predictor import predict_proba

    ckpt_dir = _save_tiny_checkpoint(tmp_path / "ckpt", model_name)
    app = make_app(ckpt_dir, max_upload_bytes=1_000_000, max_seconds=3.0)
    server = Server(app)
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
    server = Server(make_app(_save_tiny_checkpoint(tmp_path / "ckpt", "seed-lstm")))
    try:  # 300 samples give 5 frames, deltas need 9
        status, out = server.json("POST", "/api/predict", wav_bytes(np.full(300, 0.1, np.float32), 8000))
        assert status == 422 and "at least 9 frames" in out["error"]
    finally:
        server.close()


def test_real_recordings_through_the_api(fsdd_dir, donateacry_dir, checkpoint_dir):
    """A few real clips (8 kHz digits, baby cries in other formats/rates) posted as uploads."""
    from soundclass.data.dataset import list_audio

    paths = list_audio(fsdd_dir)[::1500] + list_audio(donateacry_dir)[::230]
    server = Server(make_app(checkpoint_dir, max_seconds=3.0))
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


def test_make_app_missing_checkpoint(tmp_path):
    from soundclass.errors import CheckpointError

    with pytest.raises(CheckpointError):
        make_app(tmp_path / "nothing")


def test_cli_serve_subprocess(checkpoint_dir):
    """``soundclass serve MODEL --port 0`` prints its URL and answers /api/info."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundclass", "serve", str(checkpoint_dir), "--port", "0", "--quiet",
         "--max-upload-mb", "2", "--max-seconds", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()  # bounded by the test timeout below via the URL check
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


def test_cli_serve_bad_limit_is_a_clear_error(checkpoint_dir, capsys):
    from soundclass.cli import main

    assert main(["serve", str(checkpoint_dir), "--max-upload-mb", "0"]) == 1
    assert "max_upload_bytes=0" in capsys.readouterr().err


# --------------------------------------------------------------------------- the page in Chromium

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
FAKE_MIC_ARGS = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


@pytest.fixture(scope="module")
def playwright_api():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Chromium not found at {CHROMIUM}")
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture
def browser_page(playwright_api, request):
    """``browser_page(extra_args) -> page``; browsers are closed after the test."""
    browsers = []

    def open_page(extra_args=()):
        browser = playwright_api.chromium.launch(
            executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], timeout=30_000
        )
        browsers.append(browser)
        page = browser.new_page(viewport={"width": 960, "height": 1100})
        page.set_default_timeout(15_000)
        console = []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
        page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
        page.console_log = console
        return page

    yield open_page
    for b in browsers:
        b.close()


def _shot(page, name: str) -> None:
    """Screenshots for looking at the page, only when SOUNDCLASS_SCREENSHOTS names a folder."""
    folder = os.environ.get("SOUNDCLASS_SCREENSHOTS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


def _assert_results(page) -> None:
    page.wait_for_selector("#results:not([hidden])")
    rows = page.locator("#top5 li")
    assert rows.count() == TOP_K
    pcts = [float(t.rstrip("%")) for t in page.locator("#top5 .pct").all_inner_texts()]
    assert pcts == sorted(pcts, reverse=True) and all(0 <= p <= 100 for p in pcts)
    labels = page.locator("#top5 .label").all_inner_texts()
    assert len(set(labels)) == TOP_K and set(labels) <= set(CLASSES)
    for img in ("#waveform", "#mel"):
        # decoded, non-empty and laid out
        assert page.eval_on_selector(img, "el => el.complete && el.naturalWidth > 100 && el.naturalHeight > 50")
        assert page.locator(img).is_visible()


def test_page_upload_in_chromium(server, browser_page, tmp_path):
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    wav = tmp_path / "crunch.wav"
    sf.write(wav, make_signal(sr=16000, seconds=1.5), 16000, subtype="PCM_16")
    page.set_input_files("#file-input", str(wav))
    _assert_results(page)
    assert "crunch.wav" in page.inner_text("#clip-info")
    assert page.locator("#error").is_hidden()
    _shot(page, "upload")

    # A bad file shows the API's reason on the page, and the server keeps working.
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"definitely not a wav file" * 10)
    page.set_input_files("#file-input", str(bad))
    page.wait_for_selector("#error:not([hidden])")
    assert "not a readable audio file" in page.inner_text("#error")
    _shot(page, "error")
    assert not [m for m in page.console_log if m.startswith("pageerror")], page.console_log


def test_page_drop_and_size_limit_in_chromium(serve_app, browser_page):
    server = serve_app(max_upload_bytes=50_000, max_seconds=2.0)
    page = browser_page()
    page.goto(server.url)
    page.wait_for_selector("#upload-limits:has-text('analysed')")
    ok = base64.b64encode(wav_bytes(make_signal(sr=8000, seconds=1.0), 8000)).decode()
    big = base64.b64encode(wav_bytes(make_signal(sr=8000, seconds=4.0), 8000)).decode()
    drop = """([b64, name]) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], name, {type: 'audio/wav'}));
        document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true, cancelable: true}));
    }"""
    page.evaluate(drop, [big, "big.wav"])
    page.wait_for_selector("#error:not([hidden])")
    assert "larger than the limit" in page.inner_text("#error")
    page.evaluate(drop, [ok, "dropped.wav"])
    _assert_results(page)
    assert "dropped.wav" in page.inner_text("#clip-info")
    assert page.locator("#error").is_hidden()


def test_page_record_in_chromium_with_fake_microphone(server, browser_page):
    page = browser_page(FAKE_MIC_ARGS)
    page.context.grant_permissions(["microphone"], origin=server.url.rstrip("/"))
    page.goto(server.url)
    page.wait_for_selector("#model-info:has-text('fake-bands')")
    page.click("#record-btn")
    page.wait_for_selector("#record-btn:has-text('Stop')")
    page.wait_for_timeout(1200)
    page.click("#record-btn")
    _assert_results(page)
    info = page.inner_text("#clip-info")
    assert "the recording" in info
    seconds = float(re.search(r"· ([\d.]+) s", info).group(1))
    assert 0.5 < seconds < 5.0
    assert page.locator("#error").is_hidden(), page.inner_text("#error")
    # the fake device plays a beep: the recording is not silence
    assert server.app.predictor.calls == 1 and server.app.predictor.seen_peaks[0] > 0.01
    _shot(page, "record")

