"""Frozen embedding networks run in onnxruntime: one graph per backbone, exported once and cached.

A pretrained backbone whose weights never change (the aiSFX network of
:mod:`soundclass.models.aisfx`, the Whisper-base encoder of
:mod:`soundclass.models.whisper`) is described once by a :class:`FrozenBackbone`: how to build the frozen
torch module, the checksum of its weights, a deterministic probe input and
the tolerance its ONNX graph must keep.  :func:`backbone_runner` gives, once
per process, a callable that runs it:

1. the graph is looked up in the user's cache, ``$SOUNDCLASS_CACHE/backbones``
   (else ``$XDG_CACHE_HOME/soundclass/backbones``, else
   ``~/.cache/soundclass/backbones``), as ``<name>-<precision>-<key>.onnx``,
   where ``key`` hashes the weights' checksum, :data:`BACKBONE_CODE_VERSION`,
   the backbone's own ``code_version`` and the opset;
2. if it is absent, or its side-car JSON (``.json``: the graph's SHA-256 and
   the check below) does not match the graph, or onnxruntime cannot load it,
   it is exported again (:func:`soundclass.models.onnx_trace.trace_to_onnx`),
   optionally quantized, checked against the torch module on the probe input
   (largest absolute difference at most the precision's tolerance) and
   written atomically with its side-car (:mod:`soundclass.util.atomic`); an
   unwritable cache keeps the graph in memory;
3. the session runs with one intra-op thread inside a pool worker (the
   workers fill the cores) and with every usable core otherwise.

A feature kind computed by a backbone (``'aisfx'``, ``'whisper'``; ``'fusion'``
by both) is registered with :func:`register_feature_backbone`, its backbone
and the function giving the backbone's input from a clip, so that extraction
can export the graphs before its workers start and the benchmarks can time
the bare forward pass.  A backbone's input may have dynamic axes besides the
batch (``input_axes``: the Whisper encoder's time axis).

If onnxruntime is missing, or the export or its check fails, the runner is
the torch module itself, with one warning per process saying why.

Precisions (``benchmarks/backbone_precision.py`` measures them):
``float32`` (the default), ``int8-dynamic``
(:func:`onnxruntime.quantization.quantize_dynamic`) and ``int8-static``
(``quantize_static``, QOperator, per-channel weights, calibrated on the
backbone's ``calibration`` blocks).  The quantized graphs change the
embeddings by more than float rounding, so they are opt-in: a feature cache
keyed by :class:`~soundclass.config.FeatureConfig` only ever holds float32
embeddings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import multiprocessing
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from soundclass.errors import ExportError, ParameterError
from soundclass.models.onnx_trace import short_reason, trace_to_onnx
from soundclass.util.atomic import write_bytes_atomic, write_json_atomic

__all__ = [
    "BACKBONE_CODE_VERSION",
    "PRECISIONS",
    "RUNTIMES",
    "FrozenBackbone",
    "BackboneRunner",
    "backbone_cache_dir",
    "backbone_graph_path",
    "backbone_runner",
    "export_backbone",
    "prepare_backbone",
    "FeatureBackbone",
    "register_feature_backbone",
    "feature_backbones",
]

#: Version of the export recipe (trace, quantization, check); part of every graph's key.
BACKBONE_CODE_VERSION = 1
PRECISIONS = ("float32", "int8-dynamic", "int8-static")
RUNTIMES = ("auto", "onnx", "torch")
_OPSET = 17
_INPUT = "x"
_OUTPUT = "embedding"


@dataclass(frozen=True, eq=False)
class FrozenBackbone:
    """A pretrained embedding network with fixed weights, as :func:`backbone_runner` needs it.

    Attributes
    ----------
    name : str
        File-name-safe name (``'aisfx'``).
    build : callable () -> nn.Module
        The frozen module in eval mode (may be shared: it is never trained here).
    weights_digest : callable () -> str
        Checksum of the weights the module loads (e.g. the SHA-256 of the file).
    probe : callable () -> np.ndarray
        A deterministic float32 input batch ``(B, ...)`` on which a graph is
        checked against the module.
    input_axes : Mapping[int, str]
        Dynamic axes of the input (the batch axis at least).
    tolerance : Mapping[str, float]
        Largest ``|graph - torch|`` accepted on the probe, per precision.
    code_version : int
        Bump when the module's computation changes with the same weights.
    calibration : callable () -> iterable of np.ndarray, or None
        Input batches for ``int8-static`` (``None``: that precision is refused).

    Compared by identity: a backbone is a module-level constant.
    """

    name: str
    build: Callable[[], nn.Module]
    weights_digest: Callable[[], str]
    probe: Callable[[], np.ndarray]
    input_axes: Mapping[int, str] = field(default_factory=lambda: {0: "batch"})
    tolerance: Mapping[str, float] = field(default_factory=lambda: {"float32": 1e-4})
    code_version: int = 1
    calibration: Callable[[], Any] | None = None


def backbone_cache_dir() -> Path:
    """Where backbone graphs are kept: ``$SOUNDCLASS_CACHE/backbones``, else the XDG user cache."""
    root = os.environ.get("SOUNDCLASS_CACHE")
    if root:
        return Path(root) / "backbones"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "soundclass" / "backbones"


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ParameterError(f"precision={precision!r} must be one of {PRECISIONS}")
    return precision


def backbone_graph_path(backbone: FrozenBackbone, *, precision: str = "float32") -> Path:
    """The cached graph's path (it may not exist yet); the key changes with the weights and the code."""
    _check_precision(precision)
    blob = json.dumps([backbone.name, backbone.weights_digest(), backbone.code_version,
                       BACKBONE_CODE_VERSION, _OPSET, precision]).encode()
    key = hashlib.sha256(blob).hexdigest()[:16]
    return backbone_cache_dir() / f"{backbone.name}-{precision}-{key}.onnx"


def _session(graph: bytes | str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantizer logs advice ("consider pre-processing") on the root logger at WARNING."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize(graph: bytes, backbone: FrozenBackbone, precision: str) -> bytes:
    """``graph`` quantized to int8 by onnxruntime's quantizer (files in a temporary folder)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    with tempfile.TemporaryDirectory(prefix="soundclass-quant-") as tmp, _quiet_root_logger():
        src, dst = os.path.join(tmp, "float32.onnx"), os.path.join(tmp, "int8.onnx")
        Path(src).write_bytes(graph)
        if precision == "int8-dynamic":
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
        else:
            if backbone.calibration is None:
                raise ParameterError(f"backbone {backbone.name!r} has no calibration data for int8-static")

            class _Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self._batches = iter(backbone.calibration())

                def get_next(self):
                    batch = next(self._batches, None)
                    return None if batch is None else {_INPUT: np.asarray(batch, dtype=np.float32)}

            quantize_static(src, dst, _Reader(), quant_format=QuantFormat.QOperator,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            per_channel=True)
        return Path(dst).read_bytes()


def export_backbone(backbone: FrozenBackbone, *, precision: str = "float32") -> tuple[bytes, dict]:
    """Export (and quantize) the backbone, then check the graph against torch on the probe.

    Returns
    -------
    graph : bytes
        The ONNX ``ModelProto``.
    record : dict
        The side-car: backbone, precision, graph SHA-256, the largest
        ``|graph - torch|`` on the probe and the tolerance, versions.

    Raises
    ------
    ExportError
        Torch cannot trace the module, onnxruntime cannot quantize or load the
        graph, or the graph misses the tolerance on the probe.
    """
    _check_precision(precision)
    module = backbone.build()
    probe = np.ascontiguousarray(backbone.probe(), dtype=np.float32)
    what = f"backbone {backbone.name!r}"
    graph = trace_to_onnx(module, torch.from_numpy(probe), input_name=_INPUT, output_name=_OUTPUT,
                          input_axes=backbone.input_axes, opset=_OPSET, what=what)
    with torch.inference_mode():
        want = module(torch.from_numpy(probe)).numpy()
    try:
        if precision != "float32":
            graph = _quantize(graph, backbone, precision)
        got = _session(graph, 1).run(None, {_INPUT: probe})[0]
    except Exception as exc:  # noqa: BLE001 - the quantizer and the runtime raise many types
        raise ExportError(f"{what}: {precision} graph failed in onnxruntime ({short_reason(exc)})") from exc
    diff = float(np.max(np.abs(got - want)))
    atol = float(backbone.tolerance.get(precision, backbone.tolerance["float32"]))
    if not diff <= atol:
        raise ExportError(f"{what}: {precision} graph differs from torch by {diff:.3g} > {atol:g} on the probe")
    import onnxruntime as ort

    return graph, {"backbone": backbone.name, "precision": precision,
                   "sha256": hashlib.sha256(graph).hexdigest(), "max_abs_diff": diff, "tolerance": atol,
                   "torch": torch.__version__, "onnxruntime": ort.__version__, "opset": _OPSET,
                   "code_version": [BACKBONE_CODE_VERSION, backbone.code_version]}


def _cached_graph(path: Path) -> bytes | None:
    """The graph at ``path`` if its side-car records its SHA-256, else ``None`` (absent or damaged)."""
    try:
        graph = path.read_bytes()
        record = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != hashlib.sha256(graph).hexdigest():
        return None
    return graph


def _graph(backbone: FrozenBackbone, precision: str, threads: int):
    """A session of the cached graph, exporting it first when it is absent or damaged."""
    path = backbone_graph_path(backbone, precision=precision)
    graph = _cached_graph(path)
    if graph is not None:
        try:
            return _session(graph, threads)
        except Exception as exc:  # noqa: BLE001 - a damaged graph is re-exported
            warnings.warn(f"{path}: cannot be loaded by onnxruntime ({short_reason(exc)}); exporting it again",
                          RuntimeWarning, stacklevel=3)
    elif path.exists():
        warnings.warn(f"{path}: does not match its record (damaged); exporting it again", RuntimeWarning,
                      stacklevel=3)
    graph, record = export_backbone(backbone, precision=precision)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, graph)  # the graph first: a record always describes a whole graph
        write_json_atomic(path.with_suffix(".json"), record)
    except OSError:
        pass  # an unwritable cache: this process keeps the graph in memory
    return _session(graph, threads)


def _default_threads() -> int:
    """1 in a pool worker (the workers fill the cores), every usable core otherwise."""
    if multiprocessing.parent_process() is not None:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class BackboneRunner:
    """``runner(x)`` -> the backbone's output as float32 numpy, from onnxruntime or torch.

    Attributes
    ----------
    kind : {'onnxruntime', 'torch'}
    precision : str
        ``'float32'`` for torch.
    """

    def __init__(self, backbone: FrozenBackbone, *, session: Any = None, precision: str = "float32"):
        self.backbone, self.session = backbone, session
        self.kind = "torch" if session is None else "onnxruntime"
        self.precision = "float32" if session is None else precision
        self._module = backbone.build() if session is None else None

    def __repr__(self) -> str:
        return f"BackboneRunner({self.backbone.name!r}, {self.kind}, {self.precision})"

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.session is not None:
            return self.session.run(None, {_INPUT: x})[0]
        with torch.inference_mode():
            return self._module(torch.from_numpy(x)).numpy().astype(np.float32, copy=False)


@lru_cache(maxsize=8)
def _runner(backbone: FrozenBackbone, runtime: str, precision: str, threads: int, pid: int) -> BackboneRunner:
    """Keyed by the process id too: a forked child never uses its parent's session (its threads stay
    behind in the parent)."""
    if runtime == "torch":
        return BackboneRunner(backbone)
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        if runtime == "onnx":
            raise ExportError(f"backbone {backbone.name!r}: onnxruntime is not installed") from exc
        warnings.warn(f"backbone {backbone.name!r}: onnxruntime is not installed; its embeddings run in "
                      "torch (slower)", RuntimeWarning, stacklevel=3)
        return BackboneRunner(backbone)
    try:
        return BackboneRunner(backbone, session=_graph(backbone, precision, threads), precision=precision)
    except (ExportError, ParameterError) as exc:
        if runtime == "onnx":
            raise
        warnings.warn(f"{exc}; its embeddings run in torch (slower)", RuntimeWarning, stacklevel=3)
        return BackboneRunner(backbone)


def backbone_runner(backbone: FrozenBackbone, *, runtime: str = "auto", precision: str = "float32",
                    threads: int | None = None) -> BackboneRunner:
    """The runner of ``backbone`` in this process, built once per (backbone, runtime, precision, threads).

    Parameters
    ----------
    backbone : FrozenBackbone
    runtime : {'auto', 'onnx', 'torch'}
        ``'auto'``: onnxruntime, or torch with a warning when the graph cannot
        be had; ``'onnx'``: onnxruntime or an :class:`~soundclass.errors.ExportError`;
        ``'torch'``: the torch module.
    precision : {'float32', 'int8-dynamic', 'int8-static'}
        Of the onnxruntime graph.
    threads : int or None
        Intra-op threads of the session (``None``: 1 in a pool worker, else every usable core).

    Returns
    -------
    BackboneRunner
    """
    if runtime not in RUNTIMES:
        raise ParameterError(f"runtime={runtime!r} must be one of {RUNTIMES}")
    _check_precision(precision)
    threads = _default_threads() if threads is None else threads
    return _runner(backbone, runtime, precision, int(threads), os.getpid())


def prepare_backbone(backbone: FrozenBackbone, *, precision: str = "float32") -> bool:
    """Export the graph into the cache now if it is absent or damaged, so pool workers only load it.

    Call it before starting workers: an export runs torch, which a worker
    should not have to do.  Keeps no session.

    Returns
    -------
    bool
        Whether a loadable graph is available (``False``: workers will fall
        back to torch, with the warning of :func:`backbone_runner`).
    """
    _check_precision(precision)
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    try:
        _graph(backbone, precision, 1)
    except (ExportError, ParameterError):
        return False
    return True


@dataclass(frozen=True)
class FeatureBackbone:
    """A feature kind computed by a frozen backbone.

    Attributes
    ----------
    kind : str
        The :class:`~soundclass.config.FeatureConfig` kind (``'aisfx'``).
    backbone : FrozenBackbone
    inputs : callable (y, sr) -> np.ndarray
        The backbone's input batch for one mono clip at the kind's ``sr`` (the aiSFX blocks
        ``(n_blocks, 100, 96)``, the Whisper windows ``(n_windows, 80, L)``).
    """

    kind: str
    backbone: FrozenBackbone
    inputs: Callable[..., np.ndarray]


_FEATURE_BACKBONES: dict[str, tuple[FeatureBackbone, ...]] = {}


def register_feature_backbone(kind: str, backbone: FrozenBackbone, inputs: Callable[..., np.ndarray]) -> None:
    """Declare that feature kind ``kind`` runs ``backbone`` on ``inputs(y, sr=sr)``.

    A kind made of several backbones (``'fusion'``) registers each of them, in order;
    registering a backbone again for the same kind replaces its entry.
    """
    entry = FeatureBackbone(kind, backbone, inputs)
    found = list(_FEATURE_BACKBONES.get(kind, ()))
    at = next((i for i, f in enumerate(found) if f.backbone is backbone), len(found))
    _FEATURE_BACKBONES[kind] = (*found[:at], entry, *found[at + 1 :])


def feature_backbones(kind: str) -> tuple[FeatureBackbone, ...]:
    """The backbones behind feature kind ``kind``, in registration order (empty for a kind computed
    without one)."""
    return _FEATURE_BACKBONES.get(kind, ())
