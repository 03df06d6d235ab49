"""A local web demo: upload or record a clip, see its waveform, mel spectrogram and top-5 classes.

Standard library only (:class:`http.server.ThreadingHTTPServer`); the page is
served from ``soundclass/apps/static`` (HTML, CSS and JS, no external resources).

Routes
------
``GET /``
    The page.
``GET /static/<name>``
    Its script, style sheet and recorder worklet (a fixed list, never a path).
``GET /api/info``
    ``{model, classes, n_classes, sr, max_upload_bytes, max_seconds, top_k}``.
``POST /api/predict``
    Body: the raw bytes of an audio file (any ``Content-Type``) or a
    ``multipart/form-data`` upload (the ``file``/``audio`` field, else the first
    file).  Answer: ``{top: [{label, p}] * 5, duration, analysed_seconds,
    truncated, sr, channels, waveform_png, mel_png}`` (PNGs base64-encoded).

Safety
------
- ``Content-Length`` is required (411 without it) and capped at
  ``max_upload_bytes`` (413, the body is not read).
- The audio is decoded from memory (``io.BytesIO``); nothing is written to
  disk and the client's file name is ignored.
- Clips longer than ``max_seconds`` are **analysed on their first
  ``max_seconds`` only** (the answer says ``truncated: true`` and gives the full
  ``duration``); only those samples are decoded.
- Undecodable audio gives 400 with the :class:`~soundclass.errors.AudioDecodeError`
  reason; a clip the model cannot take (too short for its features) gives 422;
  an unexpected failure gives 500 and the server keeps serving.
- The model and the plotting are each used under a lock (one request at a time).
- The default host is ``127.0.0.1``; when bound to a loopback address, requests
  must name a loopback ``Host`` (against DNS rebinding), and a cross-origin
  ``Origin`` is refused.
"""

from __future__ import annotations

import base64
import email.message
import io
import ipaddress
import json
import math
import os
import socket
import sys
import threading
import traceback
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any, Protocol
from urllib.parse import urlsplit

import numpy as np
import soundfile as sf

from soundclass.audio import check_audio, resample
from soundclass.config import FeatureConfig
from soundclass.errors import AudioDecodeError, ParameterError, SoundclassError

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES",
    "DEFAULT_MAX_SECONDS",
    "TOP_K",
    "Clip",
    "Predictor",
    "CheckpointPredictor",
    "App",
    "RequestError",
    "decode_audio",
    "parse_multipart",
    "make_app",
    "make_server",
    "serve",
]

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
DEFAULT_MAX_SECONDS = 30.0
TOP_K = 5
#: Largest native sample rate and channel count accepted (decoded size guard).
MAX_SR = 384_000
MAX_CHANNELS = 32
#: Seconds a client may stay silent while sending a request.
SOCKET_TIMEOUT = 30.0

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "recorder-worklet.js": "text/javascript; charset=utf-8",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_LOOPBACK_NAMES = ("localhost", "localhost.")


# --------------------------------------------------------------------------- audio


@dataclass(frozen=True, eq=False)
class Clip:
    """An uploaded clip, decoded and downmixed.

    Attributes
    ----------
    y : np.ndarray [shape=(n,)], float32
        The first ``max_seconds`` of the clip, mono, at the native rate.
    sr : int
        Native sample rate in Hz.
    channels : int
        Channels in the upload (before the downmix).
    duration : float
        Duration of the whole upload in seconds.
    truncated : bool
        Whether ``y`` is shorter than the upload.
    """

    y: np.ndarray
    sr: int
    channels: int
    duration: float
    truncated: bool


def decode_audio(data: bytes, *, max_seconds: float = DEFAULT_MAX_SECONDS) -> Clip:
    """Decode audio bytes from memory, keeping at most the first ``max_seconds``.

    Parameters
    ----------
    data : bytes
        A whole audio file (any format libsndfile reads: WAV, FLAC, OGG, MP3, ...).
    max_seconds : float
        Only ``int(max_seconds * sr)`` frames are decoded.

    Returns
    -------
    Clip

    Raises
    ------
    AudioDecodeError
        Empty, unreadable or corrupt data; absurd sample rate or channel count;
        no samples; non-finite samples.  ``path`` is ``None`` (nothing on disk).
    """
    if not max_seconds > 0:
        raise ParameterError(f"max_seconds={max_seconds!r} must be positive")
    if not data:
        raise AudioDecodeError(None, "empty upload (0 bytes)")
    try:
        desc = sf.SoundFile(io.BytesIO(data))
    except sf.LibsndfileError as exc:
        detail = exc.error_string.strip().rstrip(".")
        raise AudioDecodeError(
            None, f"not a readable audio file: unknown, unsupported or corrupt format ({detail})"
        ) from None
    except (RuntimeError, ValueError, TypeError, OSError) as exc:
        raise AudioDecodeError(None, f"cannot be opened as audio ({exc})") from None
    with desc:
        sr, channels, frames = int(desc.samplerate), int(desc.channels), int(desc.frames)
        if not 0 < sr <= MAX_SR:
            raise AudioDecodeError(None, f"sample rate sr={sr} Hz is not in (0, {MAX_SR}]")
        if not 0 < channels <= MAX_CHANNELS:
            raise AudioDecodeError(None, f"channels={channels} is not in [1, {MAX_CHANNELS}]")
        if frames <= 0:
            raise AudioDecodeError(None, "contains no audio samples")
        limit = max(1, int(max_seconds * sr))
        wanted = min(frames, limit)
        try:
            y = desc.read(frames=wanted, dtype="float32", always_2d=True)
        except (RuntimeError, ValueError, OSError) as exc:
            raise AudioDecodeError(None, f"corrupt audio data, decoding failed ({exc})") from None
    got = y.shape[0]
    if got == 0:
        raise AudioDecodeError(None, "contains no decodable audio samples")
    if got < wanted:  # the header announced more than the data holds: keep what is there
        frames = got
    y = np.ascontiguousarray(y[:, 0] if channels == 1 else y.mean(axis=1), dtype=np.float32)
    check_audio(y)
    return Clip(y=y, sr=sr, channels=channels, duration=frames / sr, truncated=frames > got)


# --------------------------------------------------------------------------- models


class Predictor(Protocol):
    """What the demo needs from a model.

    ``feature`` says at which rate the model listens (``feature.sr``) and how
    the mel picture is drawn; ``predict`` maps a mono signal at ``feature.sr``
    to class probabilities [shape=(len(classes),)].
    """

    model_name: str
    classes: tuple[str, ...]
    feature: FeatureConfig

    def predict(self, y: np.ndarray) -> np.ndarray: ...


class CheckpointPredictor:
    """A :class:`Predictor` over a saved checkpoint (same features as ``soundclass predict``).

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`soundclass.inference.checkpoint.load_checkpoint`.
    tta : int
        Test-time augmentation windows, as in :func:`soundclass.inference.predictor.predict_proba`.
    """

    def __init__(self, checkpoint: Any, *, tta: int = 1):
        self.checkpoint = checkpoint
        self.model_name = str(checkpoint.model_name)
        self.classes = tuple(checkpoint.classes)
        self.feature = checkpoint.feature
        self.tta = tta

    def predict(self, y: np.ndarray) -> np.ndarray:
        """Class probabilities [shape=(n_classes,)] of ``y`` [shape=(n,)] at ``feature.sr``."""
        from soundclass.extraction.extract import compute_feature
        from soundclass.inference.predictor import predict_proba

        if self.feature.max_duration is not None:  # as extraction reads files
            y = y[: int(self.feature.max_duration * self.feature.sr)]
        feature = compute_feature(y, self.feature)
        return np.asarray(predict_proba(self.checkpoint, [feature], tta=self.tta))[0]


# --------------------------------------------------------------------------- requests


class RequestError(SoundclassError):
    """A request the demo refuses: an HTTP status and a message for the page."""

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.message = message
        super().__init__(f"{self.status}: {message}")


def _header_params(value: str) -> email.message.Message:
    msg = email.message.Message()
    msg["content-type"] = value
    return msg


def parse_multipart(body: bytes, content_type: str) -> bytes:
    """The uploaded file of a ``multipart/form-data`` body.

    Takes the part named ``file`` or ``audio``, else the first part with a
    file name, else the first part.  File names are never used.

    Raises
    ------
    RequestError
        400 if the body is not valid multipart or holds no part.
    """
    boundary = _header_params(content_type).get_param("boundary")
    if not isinstance(boundary, str) or not boundary or len(boundary) > 200:
        raise RequestError(400, "multipart/form-data without a valid boundary parameter")
    delim = b"--" + boundary.encode("latin-1")
    chunks = body.split(b"\r\n" + delim)
    first = chunks[0]
    if first.startswith(delim):
        first = first[len(delim):]
    elif delim in first:
        first = first[first.index(delim) + len(delim):]
    else:
        raise RequestError(400, "malformed multipart body: opening boundary not found")
    parts = []
    for chunk in [first, *chunks[1:]]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise RequestError(400, "malformed multipart body: a part has no header block")
        disposition = ""
        for line in head.split(b"\r\n"):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value.strip()
        params = _header_params("x/x; " + disposition.partition(";")[2]) if disposition else None
        field = params.get_param("name") if params is not None else None
        has_file = params is not None and params.get_param("filename") is not None
        parts.append((field, has_file, content))
    if not parts:
        raise RequestError(400, "multipart body holds no part")
    for field, _, content in parts:
        if field in ("file", "audio"):
            return content
    for _, has_file, content in parts:
        if has_file:
            return content
    return parts[0][2]


# --------------------------------------------------------------------------- app


def _figure_axes(*, figsize: tuple[float, float], rect: tuple[float, float, float, float]) -> Any:
    """Axes at a fixed place on a new Agg figure (no layout engine: twice as fast to draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig.add_axes(rect)


def _png_base64(fig: Any, *, dpi: int = 100) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ParameterError(f"{name}={value!r} must be a positive number")


class App:
    """The demo's logic, independent of HTTP: limits, decoding, inference, pictures.

    Parameters
    ----------
    predictor : Predictor
        The model (see :func:`make_app` to load one from a checkpoint).
    max_upload_bytes : int
        Largest request body accepted.
    max_seconds : float
        Longer clips are analysed on their first ``max_seconds`` only.
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
    ):
        _positive("max_upload_bytes", max_upload_bytes)
        _positive("max_seconds", max_seconds)
        if len(predictor.classes) == 0:
            raise ParameterError("the model has no classes")
        self.predictor = predictor
        self.max_upload_bytes = int(max_upload_bytes)
        self.max_seconds = float(max_seconds)
        self._model_lock = threading.Lock()
        self._plot_lock = threading.Lock()

    def info(self) -> dict[str, Any]:
        """What ``GET /api/info`` answers."""
        return {
            "model": self.predictor.model_name,
            "classes": list(self.predictor.classes),
            "n_classes": len(self.predictor.classes),
            "sr": int(self.predictor.feature.sr),
            "max_upload_bytes": self.max_upload_bytes,
            "max_seconds": self.max_seconds,
            "top_k": min(TOP_K, len(self.predictor.classes)),
        }

    def predict_bytes(self, data: bytes) -> dict[str, Any]:
        """What ``POST /api/predict`` answers for an uploaded file's bytes.

        Raises
        ------
        AudioDecodeError
            If the bytes are not usable audio.
        RequestError
            422 if the model cannot take this clip (e.g. too short for its features).
        """
        clip = decode_audio(data, max_seconds=self.max_seconds)
        sr = int(self.predictor.feature.sr)
        y = resample(clip.y, orig_sr=clip.sr, target_sr=sr)
        if y.size == 0:
            raise AudioDecodeError(None, f"too short: no samples left at sr={sr}")
        with self._model_lock:
            try:
                proba = np.asarray(self.predictor.predict(y), dtype=np.float64)
            except ParameterError as exc:  # e.g. too short for the model's features
                raise RequestError(422, f"this clip cannot be analysed by the model: {exc}") from None
        n_classes = len(self.predictor.classes)
        if proba.shape != (n_classes,) or not np.isfinite(proba).all():
            raise SoundclassError(
                f"the model returned probabilities of shape {proba.shape} (expected ({n_classes},), finite)"
            )
        order = np.argsort(-proba, kind="stable")[:TOP_K]
        with self._plot_lock:
            waveform_png, mel_png = self._pictures(y, sr)
        return {
            "model": self.predictor.model_name,
            "top": [{"label": self.predictor.classes[i], "p": float(proba[i])} for i in order],
            "duration": clip.duration,
            "analysed_seconds": clip.y.size / clip.sr,
            "truncated": clip.truncated,
            "sr": clip.sr,
            "channels": clip.channels,
            "waveform_png": waveform_png,
            "mel_png": mel_png,
        }

    def _pictures(self, y: np.ndarray, sr: int) -> tuple[str, str]:
        """Base64 PNGs of the waveform and of the log-mel spectrogram of ``y``."""
        from soundclass.dsp.features import melspectrogram, power_to_db
        from soundclass.plots import plot_mel, plot_waveform

        f = self.predictor.feature
        # The same horizontal extent in both pictures, so that their time axes line up.
        ax = _figure_axes(figsize=(8.0, 2.2), rect=(0.1, 0.2, 0.8, 0.68))
        plot_waveform(y, sr=sr, ax=ax)
        ax.set_title("Waveform", loc="left")
        waveform = _png_base64(ax.figure)

        S = melspectrogram(
            y=y, sr=sr, n_fft=f.n_fft, hop_length=f.hop_length, win_length=f.win_length,
            n_mels=f.n_mels, fmin=f.fmin, fmax=f.fmax, htk=f.htk, norm=f.norm,
        )
        S_db = power_to_db(S, ref=np.max, top_db=80.0)
        ax = _figure_axes(figsize=(8.0, 3.0), rect=(0.1, 0.15, 0.8, 0.76))
        mesh = plot_mel(
            S_db, sr=sr, hop_length=f.hop_length, fmin=f.fmin, fmax=f.fmax, htk=f.htk, ax=ax, colorbar=False
        )
        ax.figure.colorbar(mesh, cax=ax.figure.add_axes((0.915, 0.15, 0.015, 0.76)), format="%+2.0f dB")
        ax.set_title(f"Mel spectrogram ({f.n_mels} bands, dB re max)", loc="left")
        return waveform, _png_base64(ax.figure)


def _read_static(name: str) -> bytes:
    return resources.files("soundclass.apps").joinpath("static", name).read_bytes()


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(hostport: str) -> str:
    """``'127.0.0.1'`` of ``'127.0.0.1:8000'``, ``'::1'`` of ``'[::1]:8000'``."""
    return urlsplit("//" + hostport).hostname or ""


class _Handler(BaseHTTPRequestHandler):
    """HTTP front of :class:`App` (``self.server.app``)."""

    server_version = "soundclass-serve"
    timeout = SOCKET_TIMEOUT

    # -- plumbing

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined]

    def _send(self, status: int, body: bytes, content_type: str, *, close: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", _CSP)
            self.send_header("X-Frame-Options", "DENY")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, *, close: bool = False) -> None:
        body = json.dumps(obj, allow_nan=False).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", close=close)

    def _error(self, status: int, message: str, *, close: bool = False) -> None:
        self._json(status, {"error": message, "status": status}, close=close)

    def _check_origin(self) -> None:
        """Refuse foreign ``Host`` names on a loopback server and cross-origin requests."""
        host = self.headers.get("Host", "")
        if self.server.loopback_only and not _is_loopback(_host_name(host)):  # type: ignore[attr-defined]
            raise RequestError(403, f"Host {host!r} is not a loopback name; open the page at http://127.0.0.1")
        origin = self.headers.get("Origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                raise RequestError(403, f"cross-origin request from {origin!r} refused")

    def _dispatch(self, route) -> None:
        try:
            self._check_origin()
            route()
        except RequestError as exc:
            self._error(exc.status, exc.message, close=exc.status in (411, 413) or exc.status >= 500)
        except AudioDecodeError as exc:
            self._error(400, exc.reason)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:  # one bad request never kills the server
            traceback.print_exc(file=sys.stderr)
            kind = type(exc).__name__
            self._error(500, f"internal error while handling the request ({kind}: {exc})", close=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (base class name)
        if not getattr(self.server, "quiet", False):
            super().log_message(format, *args)

    # -- routes

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self._dispatch(self._get)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch(self._post)

    def _get(self) -> None:
        path = urlsplit(self.path).path
        if path in ("/", "/index.html"):
            self._send(200, _read_static("index.html"), _STATIC["index.html"])
        elif path.startswith("/static/") and path[len("/static/"):] in _STATIC:
            name = path[len("/static/"):]
            self._send(200, _read_static(name), _STATIC[name])
        elif path == "/api/info":
            self._json(200, self.app.info())
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            raise RequestError(404, f"no such page: {path}")

    def _post(self) -> None:
        path = urlsplit(self.path).path
        if path != "/api/predict":
            raise RequestError(404, f"no such endpoint: POST {path}")
        body = self._read_body()
        content_type = self.headers.get("Content-Type", "")
        if content_type.lower().startswith("multipart/form-data"):
            body = parse_multipart(body, content_type)
        self._json(200, self.app.predict_bytes(body))

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "Content-Length required (chunked uploads are not accepted)")
        raw = self.headers.get("Content-Length")
        if raw is None:
            raise RequestError(411, "Content-Length required")
        try:
            length = int(raw.strip())
        except ValueError:
            raise RequestError(400, f"Content-Length={raw!r} is not an integer") from None
        if length < 0:
            raise RequestError(400, f"Content-Length={length} is negative")
        limit = self.app.max_upload_bytes
        if length > limit:
            raise RequestError(
                413, f"upload of {length} bytes is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MB)"
            )
        body = self.rfile.read(length)
        if len(body) < length:
            raise RequestError(400, f"body ended after {len(body)} of {length} bytes (Content-Length)")
        return body


class _ServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def make_app(
    checkpoint_path: str | os.PathLike,
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
) -> App:
    """Load a checkpoint (or training run folder) and wrap it in an :class:`App`.

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be loaded.
    """
    from soundclass.inference.checkpoint import load_checkpoint
    from soundclass.inference.predict import resolve_checkpoint

    checkpoint = load_checkpoint(resolve_checkpoint(checkpoint_path))
    return App(CheckpointPredictor(checkpoint), max_upload_bytes=max_upload_bytes, max_seconds=max_seconds)


def make_server(app: App, *, host: str = "127.0.0.1", port: int = 8000, quiet: bool = False) -> ThreadingHTTPServer:
    """A bound (not yet serving) HTTP server for ``app``; ``port=0`` picks a free port.

    Run it with ``server.serve_forever()`` (e.g. in a thread); the bound
    address is ``server.server_address``.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port={port!r} must be an integer in [0, 65535]")
    server_cls = _ServerV6 if ":" in host else ThreadingHTTPServer  # IPv6 literal or not
    server = server_cls((host.strip("[]"), port), _Handler)
    server.daemon_threads = True
    server.app = app  # type: ignore[attr-defined]
    server.quiet = quiet  # type: ignore[attr-defined]
    server.loopback_only = _is_loopback(host)  # type: ignore[attr-defined]
    return server


def _url(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}/"


def serve(
    checkpoint_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    quiet: bool = False,
) -> None:
    """Serve the demo page for a checkpoint until interrupted (Ctrl+C).

    Parameters
    ----------
    checkpoint_path : path
        A checkpoint folder or a training run folder.
    host : str
        Address to bind; keep the default ``127.0.0.1`` unless the page must be
        reachable from other machines (there is no authentication).
    port : int
        TCP port; ``0`` picks a free one (printed).
    max_upload_bytes, max_seconds
        See :class:`App`.
    quiet : bool
        Do not log each request on stderr.
    """
    app = make_app(checkpoint_path, max_upload_bytes=max_upload_bytes, max_seconds=max_seconds)
    server = make_server(app, host=host, port=port, quiet=quiet)
    with server:
        if not server.loopback_only:  # type: ignore[attr-defined]
            print(
                f"warning: serving on {host}, reachable from other machines, without authentication",
                file=sys.stderr,
            )
        print(f"soundclass serve: {app.predictor.model_name} ({len(app.predictor.classes)} classes) "
              f"at {_url(server)}  (Ctrl+C to stop)", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("soundclass serve: stopped", file=sys.stderr)
