"""Inference backends: the same clip-level predictions from torch or onnxruntime.

A :class:`Backend` wraps a loaded checkpoint and a *logits runner*: a callable
taking standardized float32 features ``(B, n_features, T)`` (or ``(B,
n_features)`` for vector models) and returning ``(B, n_classes)`` logits.
Windowing, length batching and averaging stay in
:mod:`soundclass.inference.predictor`, so both backends score exactly the same
pieces of every clip::

    backend = make_backend(checkpoint, "auto")   # onnxruntime when it works, else torch
    proba = backend.proba(features)              # cached features, (N, n_classes)
    proba = backend.proba_waveforms([y])         # mono float32 at checkpoint.feature.sr

The onnxruntime runner executes the *model part only* (features in, logits
out; dynamic batch and frame axes): features come from the feature cache on
the dataset path, and the numpy front end is already fast, so the waveform
graph of :mod:`soundclass.inference.export` would redo the features inside the
model (``benchmarks/throughput.py`` measures both).  The graph is exported
from the checkpoint on first use and cached next to it,
``<checkpoint>/onnx/logits-<key>.onnx``, where ``key`` hashes the checkpoint's
files, the torch version and the opset (written atomically; an unwritable
folder just keeps the graph in memory).  Every new session is checked against
torch on probe features (largest probability difference
:data:`ONNX_ATOL`).  With ``kind='onnx'`` any failure raises.  With
``kind='auto'``, a model torch cannot export (:class:`~soundclass.errors.ExportError`)
silently runs on torch, and any other failure (a corrupt cached graph, a
failed check) falls back to torch with a warning.  Every registered model
exports: ``aisfx-probe`` takes its cached block embeddings, the aiSFX
fine-tune its log-mel and cuts its blocks inside the graph; ``whisper-probe``
and ``fusion-probe`` take their cached clip embeddings, the Whisper fine-tune
its log-mel.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundclass import __version__
from soundclass.checkpoint.format import as_checkpoint
from soundclass.errors import ExportError, ParameterError, SoundclassError
from soundclass.extraction.extract import compute_feature
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import TorchLogits, available_cores, predict_proba
from soundclass.models.onnx_trace import trace_to_onnx
from soundclass.util.atomic import write_bytes_atomic
from soundclass.util.hashing import sha256_file

__all__ = [
    "BACKENDS",
    "ONNX_ATOL",
    "KEPT_GRAPH_BYTES",
    "Backend",
    "OnnxLogits",
    "make_backend",
    "export_logits_onnx",
]

BACKENDS = ("auto", "torch", "onnx")
ONNX_ATOL = 1e-4
"""Largest |onnxruntime - torch| probability difference accepted when a session is built."""

_INPUT = "features"
_OUTPUT = "logits"
_OPSET = 17


class Backend:
    """Clip-level probabilities of a checkpoint through one logits runner.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`soundclass.checkpoint.format.load_checkpoint`.
    logits : callable
        ``(B, n_features[, T])`` float32 -> ``(B, n_classes)``; its
        ``min_frames`` attribute (if any) is its shortest input.
    kind : {'torch', 'onnx'}
        What ``logits`` runs on.
    """

    def __init__(self, checkpoint: Any, logits: Any, kind: str):
        self.checkpoint = checkpoint
        self.logits = logits
        self.kind = kind

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.checkpoint.classes)

    def __repr__(self) -> str:
        return f"Backend(kind={self.kind!r}, model={self.checkpoint.model_name!r})"

    def proba(
        self, features: Any, *, tta: int = 1, batch_size: int = 32, pad_to_window: bool | None = None
    ) -> np.ndarray:
        """Probabilities [shape=(N, n_classes)] of cached features (see :func:`~soundclass.inference.predictor.predict_proba`)."""
        return predict_proba(
            self.checkpoint, features, tta=tta, batch_size=batch_size, model=self.logits,
            pad_to_window=pad_to_window,
        )

    def proba_waveforms(
        self, waveforms: Sequence[np.ndarray], *, tta: int = 1, batch_size: int = 32
    ) -> np.ndarray:
        """Probabilities [shape=(N, n_classes)] of mono float32 waveforms at ``checkpoint.feature.sr``.

        Features are computed here with
        :func:`soundclass.extraction.extract.compute_feature` (the cached
        features' function), then scored as :meth:`proba` does.
        """
        feature = self.checkpoint.feature
        feats = [compute_feature(np.asarray(y, dtype=np.float32), feature) for y in waveforms]
        return self.proba(feats, tta=tta, batch_size=batch_size)


#: Largest graph an :class:`OnnxLogits` keeps a copy of for worker processes.
KEPT_GRAPH_BYTES = 64 * 2**20


class OnnxLogits:
    """An onnxruntime session of a model's logits graph, called like :class:`~soundclass.inference.predictor.TorchLogits`.

    Parameters
    ----------
    model_bytes : bytes
        The serialized ONNX graph (input ``features``, output ``logits``).
    min_frames : int
        Shortest input (frames) the graph takes.
    threads : int or None
        ``intra_op_num_threads`` (default :func:`~soundclass.inference.predictor.available_cores`).
    """

    def __init__(self, model_bytes: bytes, *, min_frames: int = 1, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        # for worker processes that build their own session (inference.worker_scoring); a large
        # graph (the PANNs CNN14: ~320 MB) is not kept twice, its files are scored in two phases
        self.graph = bytes(model_bytes) if len(model_bytes) <= KEPT_GRAPH_BYTES else None
        self.min_frames = int(min_frames)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        (out,) = self.session.run([_OUTPUT], {_INPUT: x})
        return out


def export_logits_onnx(
    model: torch.nn.Module, *, input_kind: str, n_features: int, opset: int = _OPSET
) -> bytes:
    """The ONNX graph (bytes) of ``model``: standardized features -> logits.

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode after the call.
    input_kind : {'sequence', 'vector'}
        ``(batch, n_features, frames)`` (both ``batch`` and ``frames``
        dynamic) or ``(batch, n_features)``.
    n_features : int
    opset : int

    Raises
    ------
    SoundclassError
        If torch cannot export the model.
    """
    if input_kind not in ("sequence", "vector"):
        raise ParameterError(f"input_kind={input_kind!r} must be 'sequence' or 'vector'")
    model.eval()
    min_frames = max(int(getattr(model, "min_frames", 1)), 1)
    frames = max(2 * min_frames + 1, 37)  # a length no branch of the model treats specially
    shape = (2, n_features, frames) if input_kind == "sequence" else (2, n_features)
    example = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    axes = {0: "batch", 2: "frames"} if input_kind == "sequence" else {0: "batch"}
    return trace_to_onnx(model, example, input_name=_INPUT, output_name=_OUTPUT, input_axes=axes,
                         opset=opset, what="the model's logits graph")


def _content_key(checkpoint: Any, opset: int) -> str:
    h = hashlib.sha256(f"logits-v1|{torch.__version__}|{opset}|{__version__}".encode())
    for name in sorted(os.listdir(checkpoint.path)):
        path = Path(checkpoint.path) / name
        if path.is_file():
            h.update(name.encode() + b"\0" + sha256_file(path).encode())
    return h.hexdigest()[:16]


def _graph_bytes(checkpoint: Any, *, cache: bool, opset: int) -> bytes:
    kwargs = {"input_kind": checkpoint.input, "n_features": checkpoint.feature.n_features, "opset": opset}
    path = getattr(checkpoint, "path", None)
    if not cache or path is None or not Path(path).is_dir():
        return export_logits_onnx(checkpoint.model, **kwargs)
    target = Path(path) / "onnx" / f"logits-{_content_key(checkpoint, opset)}.onnx"
    if target.is_file():
        return target.read_bytes()
    data = export_logits_onnx(checkpoint.model, **kwargs)
    try:
        target.parent.mkdir(exist_ok=True)
        write_bytes_atomic(target, data)
    except OSError:
        pass  # a read-only run folder: keep the graph in memory
    return data


def _probe(checkpoint: Any, min_frames: int) -> list[np.ndarray]:
    """Standardized-feature batches of a few lengths (every length goes through a separate run)."""
    rng = np.random.default_rng(0)
    n = checkpoint.feature.n_features
    if checkpoint.input == "vector":
        return [rng.standard_normal((3, n)).astype(np.float32)]
    return [rng.standard_normal((b, n, t)).astype(np.float32)
            for b, t in ((2, max(min_frames, 101)), (1, min_frames), (3, 2 * min_frames + 5))]


def _check(runner: OnnxLogits, checkpoint: Any) -> float:
    reference = TorchLogits(checkpoint.model)
    worst = 0.0
    for batch in _probe(checkpoint, runner.min_frames):
        got, want = softmax(runner(batch)), softmax(reference(batch))
        if got.shape != want.shape or not np.all(np.isfinite(got)):
            raise SoundclassError(f"onnxruntime returned shape {got.shape} (finite: {np.isfinite(got).all()})")
        worst = max(worst, float(np.max(np.abs(got - want))))
    if worst > ONNX_ATOL:
        raise SoundclassError(f"onnxruntime and torch probabilities differ by {worst:.3g} > {ONNX_ATOL:g}")
    return worst


def onnx_logits(checkpoint: Any, *, threads: int | None = None, cache: bool = True,
                opset: int = _OPSET) -> OnnxLogits:
    """An onnxruntime logits runner for a checkpoint, checked against torch.

    Raises
    ------
    ExportError
        Torch cannot export the model (``model 'NAME' cannot be exported to ONNX: why``).
    SoundclassError
        The graph does not run in onnxruntime or fails the check.
    """
    where = getattr(checkpoint, "path", "the checkpoint")
    min_frames = max(int(getattr(checkpoint.model, "min_frames", 1)), 1)
    try:
        runner = OnnxLogits(_graph_bytes(checkpoint, cache=cache, opset=opset),
                            min_frames=min_frames, threads=threads)
        _check(runner, checkpoint)
    except ExportError as exc:
        name = getattr(checkpoint, "model_name", "the model")
        raise ExportError(f"{where}: model {name!r} cannot be exported to ONNX ({exc})") from exc
    except SoundclassError as exc:
        raise SoundclassError(f"{where}: {exc}") from exc
    except Exception as exc:  # onnxruntime's own exception types
        raise SoundclassError(f"{where}: onnxruntime cannot run the model ({type(exc).__name__}: {exc})") from exc
    return runner


def make_backend(checkpoint: Any, kind: str = "auto", *, threads: int | None = None,
                 cache: bool = True) -> Backend:
    """A :class:`Backend` for a checkpoint.

    Parameters
    ----------
    checkpoint : Checkpoint or path
        A loaded checkpoint, a checkpoint folder or a training run folder.
    kind : {'auto', 'torch', 'onnx'}
        ``'auto'``: onnxruntime when the model exports and passes the
        check, else torch (silently when torch cannot export the
        model, with a warning when a graph was made but failed).
    threads : int or None
        Intra-op threads of onnxruntime (torch's are set per call by the predictor).
    cache : bool
        Keep the exported graph next to the checkpoint.

    Raises
    ------
    ParameterError
        Unknown ``kind``.
    ExportError
        ``kind='onnx'`` and torch cannot export the model (the message says why).
    SoundclassError
        ``kind='onnx'`` and onnxruntime cannot run the model.
    """
    if kind not in BACKENDS:
        raise ParameterError(f"backend={kind!r} must be one of {BACKENDS}")
    checkpoint = as_checkpoint(checkpoint)
    if kind == "torch":
        return Backend(checkpoint, TorchLogits(checkpoint.model), "torch")
    try:
        return Backend(checkpoint, onnx_logits(checkpoint, threads=threads, cache=cache), "onnx")
    except SoundclassError as exc:
        if kind == "onnx":
            raise
        if not isinstance(exc, ExportError):  # a graph was made but is unusable: say so
            warnings.warn(f"{exc}; using torch", stacklevel=2)
        return Backend(checkpoint, TorchLogits(checkpoint.model), "torch")
