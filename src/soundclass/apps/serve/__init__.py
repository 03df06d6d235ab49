"""A local web demo: upload or record a clip, see its waveform, mel spectrogram and top-5 classes.

Served by uvicorn (a Starlette app, multipart parsing by python-multipart);
the page comes from ``soundclass/apps/static`` (HTML, CSS and JS, no external
resources, a strict Content-Security-Policy).  Audio is decoded in memory and
never written to disk; the client's file name is never used.

Modules
-------
decode
    :func:`decode_upload`, the one decoding seam (bytes -> :class:`Clip`).
predictor
    :class:`Predictor` (``predict_proba`` on a waveform) and :class:`CheckpointPredictor`.
render
    The waveform and mel pictures.
service
    :class:`App`: limits, decoding, inference and pictures, independent of HTTP.
app
    The Starlette application: routes, upload limits, admission (503 + ``Retry-After``).
server
    uvicorn: binding (loopback by default), backlog, concurrency limit, logging; :func:`serve`.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public names and their module, imported on first use: ``soundclass --help``
# (which reads the defaults) need not import uvicorn and Starlette.
_EXPORTS = {
    "decode": ("DEFAULT_MAX_SECONDS", "MAX_SR", "MAX_CHANNELS", "Clip", "decode_upload"),
    "predictor": ("Predictor", "CheckpointPredictor", "load_predictor"),
    "service": ("DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_WORKERS", "DEFAULT_QUEUE", "TOP_K", "App", "RequestError"),
    "app": ("create_asgi_app",),
    "server": ("BACKLOG", "LIMIT_CONCURRENCY", "Server", "make_app", "make_server", "serve"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
