"""Shared helpers of the web demo's tests (a fake model, WAV bytes, a real loopback server)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from soundclass.apps.serve import App, make_server
from soundclass.config import FeatureConfig

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

    def predict_proba(self, y: np.ndarray) -> np.ndarray:
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


def multipart(fields: list[tuple[str, str | None, bytes]], boundary: str = "----soundclassBoundary7") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``(name, filename or None, content)`` parts, and its Content-Type."""
    out = b""
    for name, filename, content in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disp}\r\nContent-Type: application/octet-stream\r\n\r\n".encode()
        out += content + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return out, f"multipart/form-data; boundary={boundary}"


class LiveServer:
    """An :class:`App` on the real uvicorn server, 127.0.0.1 (port 0), in a thread."""

    def __init__(self, app: App, **server_kwargs):
        self.app = app
        self.server = make_server(app, host="127.0.0.1", port=0, quiet=True, **server_kwargs).start()
        self.host, self.port = self.server.server_address[:2]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def json(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        status, hdrs, data = self.request(method, path, body, headers)
        assert hdrs["content-type"].startswith("application/json"), hdrs
        return status, json.loads(data)

    def raw(self, payload: bytes, *, shut_write: bool = False) -> bytes:
        """Send raw bytes and read the whole answer (until the server closes the connection)."""
        with socket.create_connection((self.host, self.port), timeout=TIMEOUT) as sock:
            sock.sendall(payload)
            if shut_write:
                sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self.server.shutdown()


class ServerPool:
    """``with ServerPool() as start:`` gives ``start(predictor=None, *, workers, queue, **limits) -> LiveServer``;
    every server started is shut down on exit.  Each test module wraps it in its ``serve_app`` fixture."""

    def __init__(self):
        self.servers: list[LiveServer] = []

    def __enter__(self):
        return self.start

    def start(self, predictor=None, *, workers: int = 2, queue: int = 8, **limits) -> LiveServer:
        server = LiveServer(App(predictor or FakePredictor(), **limits), workers=workers, queue=queue)
        self.servers.append(server)
        return server

    def __exit__(self, *exc) -> None:
        for s in self.servers:
            s.close()


#: The limits of the default ``server`` fixture of the test modules.
SMALL_LIMITS = {"max_upload_bytes": 200_000, "max_seconds": 2.0}


def status_line(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def json_body(answer: bytes) -> dict:
    return json.loads(answer.partition(b"\r\n\r\n")[2])


def save_tiny_checkpoint(out: Path, model_name: str) -> Path:
    """A tiny untrained checkpoint with 5 classes (weights seeded)."""
    import torch

    from soundclass.checkpoint.format import save_checkpoint
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
