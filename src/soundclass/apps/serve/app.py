"""The demo over HTTP: a Starlette application (routes, limits, admission, headers).

Routes
------
``GET /``
    The page (``soundclass/apps/static/index.html``).
``GET /static/<name>``
    Its script, style sheet and recorder worklet (a fixed list, never a path).
``GET /api/info``
    ``{model, classes, n_classes, sr, max_upload_bytes, max_seconds, top_k}``.
``POST /api/predict``
    Body: the raw bytes of an audio file (any ``Content-Type``) or a
    ``multipart/form-data`` upload (the ``file``/``audio`` field, else the first
    file, else the first part; parsed by ``python-multipart``).  Answer: see
    :meth:`~soundclass.apps.serve.service.App.predict_bytes`.

Limits
------
- A body larger than ``max_upload_bytes`` is refused with 413: at once when
  ``Content-Length`` says so (the body is not read), else as soon as the
  streamed byte count passes the cap (chunked uploads are counted too).  A
  POST with neither ``Content-Length`` nor ``Transfer-Encoding`` gets 411.
- The CPU work (decoding, inference, pictures) runs on a pool of ``workers``
  threads; at most ``workers + queue`` uploads are admitted (running or
  waiting, their bodies in memory), so upload memory is bounded by
  ``(workers + queue) * max_upload_bytes``.  Beyond that a request gets 503
  with ``Retry-After`` (its body is read and discarded first, so the client
  sees the answer, not a connection reset).
- A body must arrive within ``body_timeout`` seconds (else 408).
- An analysis must finish within ``analysis_timeout`` seconds, else the
  client gets 503 (``analysis did not finish within N s``); the upload's
  slot stays taken until its thread is really done, so a stuck analysis
  never lets more work in than ``workers`` threads can hold.
- A client that disconnects mid-upload is dropped silently.

Errors are JSON ``{error, status}``: 400 undecodable audio (the
:class:`~soundclass.errors.AudioDecodeError` reason), 403 foreign ``Host`` on a
loopback server or cross-origin ``Origin``, 404/405, 408, 411, 413, 422 (the
model cannot take the clip), 503, 500 (logged with its traceback; the server
keeps serving).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import anyio
from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from soundclass.apps.serve.service import (
    DEFAULT_QUEUE,
    DEFAULT_WORKERS,
    App,
    RequestError,
    too_large_message,
)
from soundclass.errors import AudioDecodeError, ParameterError, check_positive_int

__all__ = ["Admission", "create_asgi_app", "pick_upload", "is_loopback"]

#: Seconds a client may take to send a whole body.
BODY_TIMEOUT = 60.0
#: Seconds one analysis may take before the client is told so (uploads are capped in duration).
ANALYSIS_TIMEOUT = 120.0

log = logging.getLogger("soundclass.serve")

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
_COMMON_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_HTML_HEADERS = [(b"content-security-policy", _CSP.encode()), (b"x-frame-options", b"DENY")]
_LOOPBACK_NAMES = ("localhost", "localhost.")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is this machine only."""
    host = host.strip("[]")
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _json(status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(obj, allow_nan=False).encode("utf-8")
    return Response(body, status_code=status, headers=headers, media_type="application/json; charset=utf-8")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    if status in (408, 411, 413) or status >= 500:  # the body may be unread: end the connection
        headers = {**(headers or {}), "Connection": "close"}
    return _json(status, {"error": message, "status": status}, headers)


class Admission:
    """Counts uploads admitted (running or queued); at most ``capacity`` at a time. Thread-safe."""

    def __init__(self, capacity: int):
        self.capacity = check_positive_int("capacity", capacity)
        self.active = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.active >= self.capacity:
                return False
            self.active += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.active -= 1


def pick_upload(parts: list[tuple[str | None, bool, bytes]]) -> bytes:
    """The uploaded file among multipart parts ``(field name, has a file name, content)``.

    The part named ``file`` or ``audio``, else the first part with a file
    name, else the first part.  File names are never used.
    """
    if not parts:
        raise RequestError(400, "multipart body holds no part")
    for field, _, content in parts:
        if field in ("file", "audio"):
            return content
    for _, has_file, content in parts:
        if has_file:
            return content
    return parts[0][2]


class _MultipartCollector:
    """Feeds a streamed ``multipart/form-data`` body to python-multipart, keeping the parts in memory."""

    def __init__(self, content_type: str):
        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary or len(boundary) > 200:
            raise RequestError(400, "multipart/form-data without a valid boundary parameter")
        self.parts: list[tuple[str | None, bool, bytes]] = []
        self._chunks: list[bytes] = []
        self._field = b""
        self._value = b""
        self._headers: dict[bytes, bytes] = {}
        self._ended = False

        def on_part_begin() -> None:
            self._chunks, self._headers = [], {}

        def on_part_data(data: bytes, start: int, end: int) -> None:
            self._chunks.append(data[start:end])

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def on_header_end() -> None:
            self._headers[self._field.strip().lower()] = self._value
            self._field, self._value = b"", b""

        def on_part_end() -> None:
            _, disp = parse_options_header(self._headers.get(b"content-disposition", b""))
            name = disp.get(b"name")
            field = name.decode("utf-8", "replace") if name is not None else None
            self.parts.append((field, b"filename" in disp, b"".join(self._chunks)))
            self._chunks = []

        def on_end() -> None:
            self._ended = True

        self._parser = MultipartParser(boundary, {
            "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
            "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_end": on_end,
        })

    def write(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise RequestError(400, f"malformed multipart body ({exc})") from None

    def result(self) -> bytes:
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise RequestError(400, f"malformed multipart body ({exc})") from None
        if not self._ended and not self.parts:
            raise RequestError(400, "malformed multipart body: no complete part")
        return pick_upload(self.parts)


class _Disconnected(Exception):
    """The client went away; nothing to answer."""


def _declared_length(request: Request, limit: int) -> int | None:
    """``Content-Length`` checked against ``limit`` (None for a chunked body)."""
    raw = request.headers.get("content-length")
    if raw is None:
        if request.headers.get("transfer-encoding"):
            return None
        raise RequestError(411, "Content-Length required")
    try:
        length = int(raw.strip())
    except ValueError:
        raise RequestError(400, f"Content-Length={raw!r} is not an integer") from None
    if length < 0:
        raise RequestError(400, f"Content-Length={length} is negative")
    if length > limit:
        raise RequestError(413, too_large_message(length, limit))
    return length


async def _read_upload(request: Request, length: int | None, limit: int, timeout: float) -> bytes:
    """The uploaded file's bytes: the raw body, or the chosen part of a multipart body.

    ``length`` is the checked ``Content-Length`` (None when chunked).  At most
    ``limit`` bytes are ever held; a longer stream is refused with 413 as soon
    as the count passes ``limit``.
    """
    content_type = request.headers.get("content-type", "")
    collector = _MultipartCollector(content_type) if content_type.lower().startswith("multipart/form-data") else None
    chunks: list[bytes] = []
    received = 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise RequestError(413, too_large_message(f"more than {limit}", limit))
                if collector is not None:
                    collector.write(chunk)
                else:
                    chunks.append(chunk)
    except ClientDisconnect:
        raise _Disconnected() from None
    except TimeoutError:
        raise RequestError(408, f"the upload did not arrive within {timeout:g} s") from None
    if length is not None and received < length:
        raise RequestError(400, f"body ended after {received} of {length} bytes (Content-Length)")
    return collector.result() if collector is not None else b"".join(chunks)


async def _drain(request: Request, limit: int, timeout: float) -> None:
    """Read and discard up to ``limit`` bytes of the body (so the answer is not lost to a reset)."""
    received = 0
    try:
        with anyio.move_on_after(timeout):
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    return
    except ClientDisconnect:
        raise _Disconnected() from None


class _Guard:
    """ASGI middleware: refuses foreign ``Host``/``Origin``, adds the security headers to every answer."""

    def __init__(self, app: Any, *, loopback_only: bool):
        self.app = app
        self.loopback_only = loopback_only

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                kind = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                headers += _COMMON_HEADERS + (_HTML_HEADERS if kind.startswith(b"text/html") else [])
                message = {**message, "headers": headers}
            await send(message)

        refusal = self._refusal(scope)
        if refusal is not None:
            await _error(403, refusal)(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    def _refusal(self, scope) -> str | None:
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get(b"host", "")
        if self.loopback_only and not is_loopback(urlsplit("//" + host).hostname or ""):
            return f"Host {host!r} is not a loopback name; open the page at http://127.0.0.1"
        origin = headers.get(b"origin")
        if origin is not None:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or parts.netloc.lower() != host.lower():
                return f"cross-origin request from {origin!r} refused"
        return None


def create_asgi_app(
    app: App,
    *,
    workers: int = DEFAULT_WORKERS,
    queue: int = DEFAULT_QUEUE,
    loopback_only: bool = True,
    retry_after: int = 1,
    body_timeout: float = BODY_TIMEOUT,
    analysis_timeout: float = ANALYSIS_TIMEOUT,
) -> Any:
    """The ASGI application serving ``app`` (run it with uvicorn, or test it with Starlette's TestClient).

    Parameters
    ----------
    app : App
        The demo's logic and upload limits.
    workers : int
        Threads doing the CPU work (decoding, inference, pictures).
    queue : int
        Uploads admitted beyond the running ones (``0``: none wait).
    loopback_only : bool
        Refuse requests whose ``Host`` is not a loopback name (against DNS rebinding).
    retry_after : int
        Seconds announced in the ``Retry-After`` header of a 503.
    body_timeout : float
        Seconds a client may take to send its body.
    analysis_timeout : float
        Seconds an analysis may take before the client gets 503.

    Returns
    -------
    ASGI application
        A Starlette app wrapped in the Host/Origin guard; ``.state`` of the
        inner app holds ``pool`` and ``admission``.
    """
    workers = check_positive_int("workers", workers)
    if isinstance(queue, bool) or not isinstance(queue, int) or queue < 0:
        raise ParameterError(f"queue={queue!r} must be a non-negative integer")
    retry_after = check_positive_int("retry_after", retry_after)
    for name, value in (("body_timeout", body_timeout), ("analysis_timeout", analysis_timeout)):
        if not (value > 0 and math.isfinite(value)):
            raise ParameterError(f"{name}={value!r} must be a positive number of seconds")
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="soundclass-serve")
    admission = Admission(workers + queue)
    static = {name: resources.files("soundclass.apps").joinpath("static", name).read_bytes() for name in _STATIC}
    limit = app.max_upload_bytes

    async def page(request: Request) -> Response:
        return Response(static["index.html"], media_type=_STATIC["index.html"])

    async def static_file(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            return _error(404, f"no such page: {request.url.path}")
        return Response(static[name], media_type=_STATIC[name])

    async def info(request: Request) -> Response:
        return _json(200, app.info())

    async def favicon(request: Request) -> Response:
        return Response(b"", status_code=204, media_type="image/x-icon")

    async def predict(request: Request) -> Response:
        try:
            length = _declared_length(request, limit)  # 411/400/413 whatever the load
            if not admission.try_enter():
                await _drain(request, limit, body_timeout)
                busy = admission.capacity
                raise RequestError(
                    503, f"busy: {busy} uploads are being analysed or waiting; try again in {retry_after} s",
                    headers={"Retry-After": str(retry_after)},
                )
            running = None
            try:
                data = await _read_upload(request, length, limit, body_timeout)
                running = asyncio.get_running_loop().run_in_executor(pool, app.predict_bytes, data)
                result = await asyncio.wait_for(asyncio.shield(running), analysis_timeout)
            except asyncio.TimeoutError:
                log.warning("an analysis took longer than %.0f s; its slot is freed when it ends",
                            analysis_timeout)
                raise RequestError(503, f"analysis did not finish within {analysis_timeout:g} s",
                                   headers={"Retry-After": str(retry_after)}) from None
            finally:
                if running is not None and not running.done():
                    running.add_done_callback(lambda _: admission.leave())
                else:
                    admission.leave()
            return _json(200, result)
        except RequestError as exc:
            return _error(exc.status, exc.message, exc.headers)
        except AudioDecodeError as exc:
            return _error(400, exc.reason)
        except _Disconnected:
            log.debug("client disconnected during the upload")
            return Response(b"", status_code=400)  # nobody reads it; uvicorn drops it quietly
        except Exception as exc:  # one bad request never kills the server
            log.exception("internal error while handling POST /api/predict")
            kind = type(exc).__name__
            return _error(500, f"internal error while handling the request ({kind}: {exc})")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return _error(405, f"method {request.method} not allowed on {request.url.path}")
        return _error(status, f"no such page: {request.url.path}")

    @asynccontextmanager
    async def lifespan(_app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/index.html", page, methods=["GET"]),
        Route("/static/{name}", static_file, methods=["GET"]),
        Route("/api/info", info, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/api/predict", predict, methods=["POST"]),
    ]
    inner = Starlette(routes=routes, exception_handlers={HTTPException: not_found}, lifespan=lifespan)
    inner.state.pool = pool
    inner.state.admission = admission
    inner.state.app = app
    guarded = _Guard(inner, loopback_only=loopback_only)
    guarded.state = inner.state  # type: ignore[attr-defined]
    return guarded
