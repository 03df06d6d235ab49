"""The demo on uvicorn: binding (loopback by default), server limits, logging, the ``serve`` entry point."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from typing import Any

import uvicorn

from soundclass.apps.serve.app import create_asgi_app, is_loopback
from soundclass.apps.serve.decode import DEFAULT_MAX_SECONDS
from soundclass.apps.serve.predictor import load_predictor
from soundclass.apps.serve.service import (
    DEFAULT_MAX_UPLOAD_BYTES,
    DEFAULT_QUEUE,
    DEFAULT_WORKERS,
    App,
)
from soundclass.errors import ParameterError, check_positive_int

__all__ = ["BACKLOG", "LIMIT_CONCURRENCY", "Server", "make_app", "make_server", "serve"]

#: Listen backlog: connections the kernel queues before uvicorn accepts them.
BACKLOG = 2048
#: Open connections and running requests uvicorn allows; past it, uvicorn itself
#: answers a plain 503.  Far above ``workers + queue``, so that the app's own
#: 503 with ``Retry-After`` is what a busy server normally answers; each such
#: connection buffers at most ~64 kB of body (uvicorn's flow control).
LIMIT_CONCURRENCY = 1024
#: Seconds an idle keep-alive connection stays open.
KEEP_ALIVE = 5


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
        If the checkpoint cannot be read (``permission denied``, ``symlink loop``,
        ``not found`` ... naming the path) or loaded.
    """
    return App(load_predictor(checkpoint_path), max_upload_bytes=max_upload_bytes, max_seconds=max_seconds)


class Server:
    """A uvicorn server bound to a socket (not yet serving).

    Attributes
    ----------
    server_address : tuple
        The bound ``(host, port, ...)``; the port is the real one when 0 was asked.
    loopback_only : bool
        Whether the server is reachable from this machine only.
    asgi : ASGI application
        What it serves (see :func:`~soundclass.apps.serve.app.create_asgi_app`).
    """

    def __init__(self, asgi: Any, sock: socket.socket, config: uvicorn.Config, *, loopback_only: bool):
        self.asgi = asgi
        self.socket = sock
        self.loopback_only = loopback_only
        self.server_address = sock.getsockname()
        self._uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown` (or Ctrl+C when run in the main thread)."""
        self._uvicorn.run(sockets=[self.socket])

    def start(self) -> Server:
        """Serve from a background thread; returns once the server accepts requests."""
        self._thread = threading.Thread(target=self.serve_forever, name="soundclass-serve", daemon=True)
        self._thread.start()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread stopped during start-up")
            self._thread.join(0.01)
        return self

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop serving (open connections are closed) and release the socket."""
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self.socket.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()


def _bind(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ParameterError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _log_config(quiet: bool) -> dict:
    """uvicorn's loggers on stderr; ``quiet`` drops the access log and the info lines."""
    level = "WARNING" if quiet else "INFO"
    fmt = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s", "datefmt": "%H:%M:%S"}
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            "soundclass.serve": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def make_server(
    app: App,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    workers: int = DEFAULT_WORKERS,
    queue: int = DEFAULT_QUEUE,
    backlog: int = BACKLOG,
    limit_concurrency: int = LIMIT_CONCURRENCY,
) -> Server:
    """A bound (not yet serving) uvicorn server for ``app``; ``port=0`` picks a free port.

    Run it with ``server.serve_forever()`` or ``server.start()`` (a thread);
    stop it with ``server.shutdown()``.

    Parameters
    ----------
    app : App
        The demo.
    host : str
        Address to bind (``127.0.0.1`` by default; IPv6 literals with or without brackets).
    port : int
        TCP port in [0, 65535].
    quiet : bool
        No access log and no info lines (warnings and errors still go to stderr).
    workers, queue : int
        See :func:`~soundclass.apps.serve.app.create_asgi_app`.
    backlog : int
        Listen backlog.
    limit_concurrency : int
        uvicorn's cap on open connections and running requests.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ParameterError(f"port={port!r} must be an integer in [0, 65535]")
    backlog = check_positive_int("backlog", backlog)
    limit_concurrency = check_positive_int("limit_concurrency", limit_concurrency)
    host = host.strip("[]")
    loopback_only = is_loopback(host)
    asgi = create_asgi_app(app, workers=workers, queue=queue, loopback_only=loopback_only)
    sock = _bind(host, port, backlog)
    config = uvicorn.Config(
        asgi,
        http="h11",
        loop="asyncio",
        lifespan="on",
        backlog=backlog,
        limit_concurrency=limit_concurrency,
        timeout_keep_alive=KEEP_ALIVE,
        access_log=not quiet,
        log_config=_log_config(quiet),
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return Server(asgi, sock, config, loopback_only=loopback_only)


def serve(
    checkpoint_path: str | os.PathLike,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    quiet: bool = False,
    workers: int = DEFAULT_WORKERS,
    queue: int = DEFAULT_QUEUE,
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
    workers, queue : int
        Worker threads, and uploads allowed to wait for one (then 503).
    """
    app = make_app(checkpoint_path, max_upload_bytes=max_upload_bytes, max_seconds=max_seconds)
    server = make_server(app, host=host, port=port, quiet=quiet, workers=workers, queue=queue)
    if not server.loopback_only:
        print(f"warning: serving on {host}, reachable from other machines, without authentication",
              file=sys.stderr)
    print(f"soundclass serve: {app.predictor.model_name} ({len(app.predictor.classes)} classes) "
          f"at {server.url}  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.socket.close()
        logging.getLogger("soundclass.serve").debug("stopped")
    print("soundclass serve: stopped", file=sys.stderr)
