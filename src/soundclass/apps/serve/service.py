"""The demo's logic, independent of HTTP: limits, decoding, inference, pictures."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np

from soundclass.apps.serve.decode import DEFAULT_MAX_SECONDS, decode_upload
from soundclass.apps.serve.predictor import Predictor
from soundclass.apps.serve.render import render_pictures
from soundclass.audio import resample
from soundclass.errors import AudioDecodeError, ParameterError, SoundclassError
from soundclass.inference.calibration import unknown_mask
from soundclass.inference.windows import score_array

__all__ = [
    "DEFAULT_MAX_UPLOAD_BYTES", "DEFAULT_WORKERS", "DEFAULT_QUEUE", "TOP_K", "App", "RequestError",
    "too_large_message",
]

DEFAULT_MAX_UPLOAD_BYTES = 20 * 2**20
#: Worker threads and waiting uploads (sized for a 2-core machine).
DEFAULT_WORKERS = 2
DEFAULT_QUEUE = 8
TOP_K = 5
#: A timeline of a long upload has at most this many windows (the hop grows beyond).
MAX_TIMELINE_WINDOWS = 400


class RequestError(SoundclassError):
    """A request the demo refuses: an HTTP status and a message for the page."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        self.status = int(status)
        self.message = message
        self.headers = dict(headers or {})
        super().__init__(f"{self.status}: {message}")


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ParameterError(f"{name}={value!r} must be a positive number")


class App:
    """What the demo does with an upload; thread-safe, so a pool of workers can share it.

    Parameters
    ----------
    predictor : Predictor
        The model (see :func:`soundclass.apps.serve.make_app` to load one from a checkpoint).
    max_upload_bytes : int
        Largest request body accepted.
    max_seconds : float
        Longer clips are analysed on their first ``max_seconds`` only.
    window_seconds : float, optional
        Window of the timeline (class probabilities over time) added to the
        answer for clips longer than one window; default the predictor's
        ``window_seconds`` (a checkpoint's training window), and no timeline
        for a predictor without one.

    Notes
    -----
    Decoding and resampling run in parallel on the caller's threads; the model
    and the plotting are each used under a lock (one request at a time).
    """

    def __init__(
        self,
        predictor: Predictor,
        *,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        window_seconds: float | None = None,
    ):
        _positive("max_upload_bytes", max_upload_bytes)
        _positive("max_seconds", max_seconds)
        if window_seconds is None:
            window_seconds = getattr(predictor, "window_seconds", None)
        if window_seconds is not None:
            _positive("window_seconds", window_seconds)
        self.window_seconds = None if window_seconds is None else float(window_seconds)
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

        Returns
        -------
        dict
            ``{model, top: [{label, p}] * TOP_K, duration, analysed_seconds,
            truncated, sr, channels, waveform_png, mel_png, timeline}``;
            ``timeline`` is ``None`` for a clip of at most one window, else
            :meth:`timeline` of it.

        Raises
        ------
        AudioDecodeError
            If the bytes are not usable audio.
        RequestError
            413 if ``data`` is larger than ``max_upload_bytes``; 422 if the
            model cannot take this clip (e.g. too short for its features).
        SoundclassError
            If the model returns no valid probabilities.
        """
        if len(data) > self.max_upload_bytes:
            raise RequestError(413, too_large_message(len(data), self.max_upload_bytes))
        clip = decode_upload(data, max_seconds=self.max_seconds)
        sr = int(self.predictor.feature.sr)
        y = resample(clip.y, orig_sr=clip.sr, target_sr=sr)
        if y.size == 0:
            raise AudioDecodeError(None, f"too short: no samples left at sr={sr}")
        with self._model_lock:
            try:
                proba = np.asarray(self.predictor.predict_proba(y), dtype=np.float64)
            except ParameterError as exc:  # e.g. too short for the model's features
                raise RequestError(422, f"this clip cannot be analysed by the model: {exc}") from None
        n_classes = len(self.predictor.classes)
        if proba.shape != (n_classes,) or not np.isfinite(proba).all():
            raise SoundclassError(
                f"the model returned probabilities of shape {proba.shape} (expected ({n_classes},), finite)"
            )
        order = np.argsort(-proba, kind="stable")[:TOP_K]
        timeline = self.timeline(y, sr=sr)
        with self._plot_lock:
            waveform_png, mel_png = render_pictures(y, sr=sr, feature=self.predictor.feature)
        threshold = getattr(self.predictor, "unknown_threshold", None)
        return {
            "model": self.predictor.model_name,
            "top": [{"label": self.predictor.classes[i], "p": float(proba[i])} for i in order],
            "unknown": bool(unknown_mask(proba[None], threshold=threshold)[0]),
            "unknown_threshold": threshold,
            "duration": clip.duration,
            "analysed_seconds": clip.y.size / clip.sr,
            "truncated": clip.truncated,
            "sr": clip.sr,
            "channels": clip.channels,
            "waveform_png": waveform_png,
            "mel_png": mel_png,
            "timeline": timeline,
        }

    def timeline(self, y: np.ndarray, *, sr: int) -> dict[str, Any] | None:
        """Class probabilities over time of ``y`` [shape=(n,)] at ``sr``, or ``None`` if one window holds it.

        Windows of ``window_seconds`` every half window (wider hops past
        :data:`MAX_TIMELINE_WINDOWS` windows), scored by the predictor one by
        one; the same windows and segments as ``soundclass predict --windows``
        (:mod:`soundclass.inference.windows`).

        Returns
        -------
        dict or None
            ``{window_seconds, hop_seconds, classes, starts, ends, proba,
            labels, segments: [{start, end, label, p}]}``.
        """
        window = self.window_seconds
        duration = y.size / sr
        if window is None or duration <= window:
            return None
        hop = max(0.5 * window, (duration - window) / (MAX_TIMELINE_WINDOWS - 1))
        predictor = self.predictor

        def proba_fn(waveforms: list[np.ndarray]) -> np.ndarray:
            return np.stack([np.asarray(predictor.predict_proba(w), dtype=np.float64) for w in waveforms])

        with self._model_lock:
            try:
                tl = score_array(y, proba_fn, sr=sr, classes=predictor.classes, window_seconds=window,
                                 hop_seconds=hop)
            except ParameterError as exc:
                raise RequestError(422, f"this clip cannot be analysed window by window: {exc}") from None
        return {"window_seconds": window, "hop_seconds": hop, **tl.to_json()}


def too_large_message(n: int | str, limit: int) -> str:
    """The 413 message for an upload of ``n`` bytes (or words like ``"more than N"``) above ``limit``."""
    return f"upload of {n} bytes is larger than the limit of {limit} bytes ({limit / 2**20:.1f} MB)"
