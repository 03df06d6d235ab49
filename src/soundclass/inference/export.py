"""ONNX export of the whole pipeline: waveform -> features -> model -> probabilities.

The exported graph takes raw mono waveforms ``waveform`` of shape
``(batch, samples)`` float32 at the model's sample rate (both axes dynamic) and
returns ``probabilities`` of shape ``(batch, n_classes)``:
:class:`~soundclass.dsp.frontend.FeatureFrontend` (the model's feature, equal to
``compute_feature``), the training-set standardization (if any), the model and
a softmax.  The ONNX ``metadata_props`` carry ``classes`` (JSON list, in
column order), ``sr``, ``feature`` (JSON ``FeatureConfig``), ``input``,
``min_samples`` and, from a checkpoint, ``model_name``, ``clip_frames``,
``temperature`` and ``unknown_threshold`` (the checkpoint's calibration: the
graph outputs the uncalibrated softmax ``p``; calibrated is
``softmax(log(p) / temperature)``, and ``"unknown"`` is the answer when its top
value is below ``unknown_threshold``, ``""`` meaning none);
:func:`read_metadata` returns them.

What the graph scores
---------------------
The *whole* waveform of each row, in one pass: there is no windowing inside the
graph.  Sequence models see all frames of the clip at once (the torch
predictor of :mod:`soundclass.inference.predictor` instead averages windows of
``clip_frames`` frames when the checkpoint has them; the two agree when a clip
is exactly one window long or ``clip_frames`` is ``None``).  Rows of one batch
have the same length, so batch clips of equal length (or score one at a time):
zero-padding a clip changes its features.

Short clips
-----------
With ``center=True`` every waveform of at least one sample gives
``1 + samples // hop_length`` frames, so a clip shorter than one STFT frame
(``n_fft`` samples) is still featured, as librosa does (zero padding).  Deltas
need 9 frames and the PANNs-style CNNs need ``model.min_frames`` frames, so
the graph first zero-pads (at the end, inside the graph) every waveform shorter
than ``min_samples`` (stored in the metadata) to that length; longer waveforms
pass unchanged.  For those short clips the result is that of the padded clip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from soundclass import __version__
from soundclass.config import FeatureConfig, config_to_dict
from soundclass.dsp.frontend import DELTA_WIDTH, FeatureFrontend
from soundclass.errors import ParameterError, SoundclassError, check_int
from soundclass.inference.onnx_trace import trace_to_onnx
from soundclass.util.atomic import write_bytes_atomic

__all__ = [
    "WaveformClassifier",
    "min_samples_for",
    "export_model",
    "export_onnx",
    "check_onnx",
    "read_metadata",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

INPUT_NAME = "waveform"
OUTPUT_NAME = "probabilities"
CHECK_ATOL = 1e-4
"""Largest |onnxruntime - torch| difference of probabilities :func:`check_onnx` accepts."""


def min_samples_for(feature: FeatureConfig, *, min_frames: int = 1) -> int:
    """Fewest samples giving at least ``min_frames`` frames (and 9 frames with deltas).

    Parameters
    ----------
    feature : FeatureConfig
    min_frames : int
        Frames the model needs (``model.min_frames`` of the PANNs-style CNNs).

    Returns
    -------
    int >= 1
    """
    frames = max(int(min_frames), DELTA_WIDTH if feature.deltas else 1, 1)
    if feature.center:
        # frames = 1 + (n + 2 * (n_fft // 2) - n_fft) // hop_length
        n = feature.n_fft - 2 * (feature.n_fft // 2) + (frames - 1) * feature.hop_length
        if feature.pad_mode == "reflect":
            n = max(n, feature.n_fft // 2 + 1)
    else:
        n = feature.n_fft + (frames - 1) * feature.hop_length
    return max(n, 1)


class WaveformClassifier(nn.Module):
    """Frontend + standardization + model + softmax, as one module.

    Parameters
    ----------
    model : torch.nn.Module
        Logits model taking ``(B, n_features, T)`` (``input_kind='sequence'``) or
        ``(B, n_features)`` (``'vector'``); put in eval mode.
    feature : FeatureConfig
        The feature the model takes; its ``pooling`` must match ``input_kind``.
    input_kind : {'sequence', 'vector'} or None
        ``None``: ``'vector'`` when ``feature.pooling == 'mean'``, else ``'sequence'``.
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
        Standardization ``(x - mean) / std`` per feature row, before the model.

    Shapes
    ------
    ``(B, n)`` waveforms at ``feature.sr`` -> ``(B, n_classes)`` probabilities.
    """

    def __init__(
        self,
        model: nn.Module,
        feature: FeatureConfig,
        *,
        input_kind: str | None = None,
        norm_mean: np.ndarray | None = None,
        norm_std: np.ndarray | None = None,
    ):
        super().__init__()
        if not isinstance(feature, FeatureConfig):
            raise ParameterError(f"feature must be a FeatureConfig, got {type(feature).__name__}")
        if input_kind is None:
            input_kind = "vector" if feature.pooling == "mean" else "sequence"
        if input_kind not in ("sequence", "vector"):
            raise ParameterError(f"input_kind={input_kind!r} must be 'sequence' or 'vector'")
        if (input_kind == "vector") != (feature.pooling == "mean"):
            raise ParameterError(
                f"input_kind={input_kind!r} does not fit feature pooling={feature.pooling!r}"
            )
        if (norm_mean is None) != (norm_std is None):
            raise ParameterError("norm_mean and norm_std must be given together")
        self.feature = feature
        self.input_kind = input_kind
        self.frontend = FeatureFrontend(feature)
        self.model = model.eval()
        self.min_samples = min_samples_for(feature, min_frames=int(getattr(model, "min_frames", 1)))
        self.standardize = norm_mean is not None
        if self.standardize:
            mean = np.asarray(norm_mean, dtype=np.float32)
            std = np.asarray(norm_std, dtype=np.float32)
            for name, arr in (("norm_mean", mean), ("norm_std", std)):
                if arr.shape != (feature.n_features,):
                    raise ParameterError(
                        f"{name} has shape {arr.shape}, expected ({feature.n_features},)"
                    )
            if not np.all(std > 0):
                raise ParameterError("norm_std must be positive everywhere")
            shape = (feature.n_features, 1) if input_kind == "sequence" else (feature.n_features,)
            self.register_buffer("norm_mean", torch.tensor(mean.reshape(shape)))
            self.register_buffer("norm_std", torch.tensor(std.reshape(shape)))

    def pad_short(self, y: torch.Tensor) -> torch.Tensor:
        """Zero-pad waveforms shorter than ``min_samples`` at the end (graph-friendly)."""
        if self.min_samples <= 1:
            return y
        n = y.shape[1]  # an int in eager mode, a traced 0-d tensor while exporting
        end = torch.clamp(torch.as_tensor(n), min=self.min_samples)
        return torch.cat([y, y.new_zeros(y.shape[0], self.min_samples)], dim=1)[:, :end]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = self.frontend(self.pad_short(y))  # (B, n_features, T) or (B, n_features)
        if self.standardize:
            x = (x - self.norm_mean) / self.norm_std
        logits = self.model(x)  # (B, n_classes)
        return torch.softmax(logits, dim=-1)


def _probe_signals(sr: int, min_samples: int) -> list[np.ndarray]:
    """Check inputs: batches of chirp+noise of several lengths, a short clip, silence."""
    rng = np.random.default_rng(0)

    def clip(n: int, seed: int) -> np.ndarray:
        t = np.arange(n) / sr
        sweep = 0.1 * sr / max(n / sr, 1e-9)  # 200 Hz -> 200 Hz + sr / 5 over the clip
        noise = np.random.default_rng(seed).standard_normal(n)
        return (0.3 * np.sin(2 * np.pi * (200.0 * t + sweep * t * t)) + 0.05 * noise).astype(np.float32)

    long_n = max(int(1.3 * sr), 2 * min_samples)
    mid_n = max(int(0.5 * sr), min_samples + 1)
    return [
        np.stack([clip(long_n, 1), 0.01 * clip(long_n, 2)]),  # batch of 2, different levels
        clip(mid_n, 3)[None],
        clip(max(min_samples // 2, 1), 4)[None],  # shorter than min_samples: padded in graph
        np.zeros((1, mid_n), dtype=np.float32),  # silence
        (0.1 * rng.standard_normal((3, int(0.7 * sr)))).astype(np.float32),  # batch of 3 noise
    ]


def check_onnx(
    module: nn.Module,
    onnx_path: str | os.PathLike,
    signals: Sequence[np.ndarray],
    *,
    atol: float = CHECK_ATOL,
) -> float:
    """Run ``onnx_path`` with onnxruntime and ``module`` with torch on the same waveforms.

    Parameters
    ----------
    module : torch.nn.Module
        The exported module (eval mode).
    onnx_path : path
    signals : sequence of np.ndarray [shape=(B, n)]
        float32 waveform batches.
    atol : float
        Largest accepted absolute difference of the outputs.

    Returns
    -------
    float
        The largest absolute difference seen.

    Raises
    ------
    SoundclassError
        If onnxruntime fails or an output differs by more than ``atol``.
    """
    import onnxruntime as ort

    path = os.fspath(onnx_path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise SoundclassError(f"{path}: onnxruntime cannot load the exported graph ({exc})") from exc
    worst = 0.0
    module.eval()
    for batch in signals:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        with torch.inference_mode():
            expected = module(torch.from_numpy(batch)).numpy()
        try:
            (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: batch})
        except Exception as exc:
            raise SoundclassError(
                f"{path}: onnxruntime failed on a waveform batch of shape {batch.shape} ({exc})"
            ) from exc
        if got.shape != expected.shape or not np.all(np.isfinite(got)):
            raise SoundclassError(
                f"{path}: onnxruntime output has shape {got.shape} (finite: {np.isfinite(got).all()}), "
                f"torch {expected.shape}, for input {batch.shape}"
            )
        diff = float(np.max(np.abs(got - expected)))
        worst = max(worst, diff)
        if diff > atol:
            raise SoundclassError(
                f"{path}: onnxruntime and torch differ by {diff:.3g} > atol={atol:g} "
                f"on a waveform batch of shape {batch.shape}"
            )
    return worst


def _max_opset() -> int:
    """Highest opset torch's TorchScript-based exporter (``dynamo=False``) writes."""
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except ImportError:  # private constant; torch 2.1 .. 2.13 all reach at least 17
        return 17
    return int(ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET)


def _save_onnx(model_proto, out: Path) -> None:
    """Serialise ``model_proto`` to ``out`` atomically (:mod:`soundclass.util.atomic`)."""
    write_bytes_atomic(out, model_proto.SerializeToString())


def export_model(
    model: nn.Module,
    feature: FeatureConfig,
    classes: Sequence[str],
    out_path: str | os.PathLike,
    *,
    input_kind: str | None = None,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
    opset: int = 17,
    check: bool = True,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Export ``waveform -> probabilities`` for an in-memory model to ONNX.

    Parameters
    ----------
    model : torch.nn.Module
        Logits model (see :class:`WaveformClassifier`).
    feature : FeatureConfig
        Its input feature.
    classes : sequence of str
        Class names in logit order (``len(classes)`` must equal the logits).
    out_path : path
        The ``.onnx`` file to write (parent folders are created).
    input_kind, norm_mean, norm_std
        See :class:`WaveformClassifier`.
    opset : int
        ONNX opset, 13 to 20 with torch 2.13 (the graph is written by torch's
        TorchScript-based exporter, ``dynamo=False``: it needs no onnxscript).
    check : bool
        Compare onnxruntime with torch on probe waveforms (:func:`check_onnx`).
    metadata : mapping of str to str, optional
        Extra ``metadata_props``.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    ParameterError
        Bad arguments.
    SoundclassError
        If the export fails or onnxruntime disagrees with torch.
    """
    import onnx

    max_opset = _max_opset()
    check_int("opset", opset, low=13, high=max_opset,
              what=f"an integer in 13..{max_opset} (torch's TorchScript ONNX exporter)")
    classes = [str(c) for c in classes]
    if not classes:
        raise ParameterError("classes must not be empty")
    out = Path(out_path)
    module = WaveformClassifier(
        model, feature, input_kind=input_kind, norm_mean=norm_mean, norm_std=norm_std
    ).eval()
    example = torch.from_numpy(_probe_signals(feature.sr, module.min_samples)[0])
    with torch.inference_mode():
        n_out = module(example).shape[-1]
    if n_out != len(classes):
        raise ParameterError(f"the model has {n_out} outputs but {len(classes)} classes were given")

    out.parent.mkdir(parents=True, exist_ok=True)
    graph = trace_to_onnx(module, example, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                          input_axes={0: "batch", 1: "samples"}, opset=opset, what=str(out))
    proto = onnx.load_model_from_string(graph)

    props = {
        "classes": json.dumps(classes),
        "sr": str(feature.sr),
        "feature": json.dumps(config_to_dict(feature)),
        "input": module.input_kind,
        "min_samples": str(module.min_samples),
        "soundclass_version": __version__,
        **{str(k): str(v) for k, v in (metadata or {}).items()},
    }
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (
        f"soundclass: mono float32 waveform (batch, samples) at {feature.sr} Hz -> "
        f"class probabilities (batch, {len(classes)}); the whole waveform is scored"
    )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise SoundclassError(f"{out}: exported graph is not valid ONNX ({exc})") from exc
    _save_onnx(proto, out)
    if check:
        try:
            check_onnx(module, out, _probe_signals(feature.sr, module.min_samples))
        except SoundclassError:
            out.unlink(missing_ok=True)  # never leave a graph that failed its check
            raise
    return out


def export_onnx(
    checkpoint_path: str | os.PathLike,
    out_path: str | os.PathLike,
    *,
    opset: int = 17,
    check: bool = True,
) -> Path:
    """Export a checkpoint (see :mod:`soundclass.inference.checkpoint`) to one ONNX graph.

    Parameters
    ----------
    checkpoint_path : path
        Checkpoint folder, its ``model.json``, or a training run folder holding
        ``checkpoint/model.json``.
    out_path : path
        The ``.onnx`` file to write.
    opset : int
    check : bool
        Compare onnxruntime with torch before returning.

    Returns
    -------
    pathlib.Path
        ``out_path``.

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be loaded.
    SoundclassError
        If the export or the check fails.
    """
    from soundclass.inference.checkpoint import load_checkpoint
    from soundclass.inference.predict import resolve_checkpoint

    ckpt = load_checkpoint(resolve_checkpoint(checkpoint_path))
    return export_model(
        ckpt.model,
        ckpt.feature,
        ckpt.classes,
        out_path,
        input_kind=ckpt.input,
        norm_mean=ckpt.norm_mean,
        norm_std=ckpt.norm_std,
        opset=opset,
        check=check,
        metadata={
            "model_name": ckpt.model_name,
            # the torch predictor's window; the graph itself scores whole waveforms
            "clip_frames": "" if ckpt.clip_frames is None else str(ckpt.clip_frames),
            **_calibration_metadata(ckpt),
        },
    )


def _calibration_metadata(ckpt: Any) -> dict[str, str]:
    """``temperature`` and ``unknown_threshold`` (``""``: none) of a checkpoint, for ``metadata_props``.

    The graph's ``probabilities`` are the model's softmax; a consumer calibrates
    them as ``softmax(log(p) / temperature)`` and answers ``"unknown"`` when the
    top calibrated probability is below ``unknown_threshold``.
    """
    from soundclass.inference.calibrated import calibration_of

    cal = calibration_of(ckpt)
    thr = cal.get("unknown_threshold")
    return {"temperature": repr(float(cal["temperature"])),
            "unknown_threshold": "" if thr is None else repr(float(thr)),
            "calibration": json.dumps({k: v for k, v in cal.items() if k != "precision_thresholds"})}


def read_metadata(onnx_path: str | os.PathLike) -> dict:
    """The soundclass metadata of an exported graph.

    Returns
    -------
    dict
        ``classes`` (list of str), ``sr`` (int), ``feature`` (FeatureConfig),
        ``min_samples`` (int) and every other ``metadata_props`` entry as str.

    Raises
    ------
    SoundclassError
        If the file is not an ONNX model exported by soundclass.
    """
    import onnx

    from soundclass.config import config_from_dict

    path = os.fspath(onnx_path)
    try:
        proto = onnx.load_model(path, load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError
        raise SoundclassError(f"{path}: not a readable ONNX model ({exc})") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in ("classes", "sr", "feature") if k not in props]
    if missing:
        raise SoundclassError(f"{path}: not exported by soundclass (missing metadata {missing})")
    meta: dict = dict(props)
    meta["classes"] = json.loads(props["classes"])
    meta["sr"] = int(props["sr"])
    meta["feature"] = config_from_dict(FeatureConfig, json.loads(props["feature"]))
    meta["min_samples"] = int(props.get("min_samples", "1"))
    return meta
