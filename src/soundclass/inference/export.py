"""ONNX export of the whole pipeline: waveform -> features -> model -> probabilities.

The exported graph takes raw mono waveforms ``waveform`` of shape
``(batch, samples)`` float32 at the model's sample rate (both axes dynamic) and
returns ``probabilities`` of shape ``(batch, n_classes)``: the model's front
end (equal to ``compute_feature``; for the aiSFX models the aiSFX recipe and,
for ``aisfx-probe``, the pretrained network), the training-set
standardization (if any), the model and a softmax
(:class:`~soundclass.inference.waveform_graph.WaveformClassifier`).  Every
registered model exports; a model torch cannot trace (or that does not take its
front end's output) is an :class:`~soundclass.errors.ExportError` naming it
and the reason.  The ONNX ``metadata_props`` carry ``classes`` (JSON list, in
column order), ``sr``, ``feature`` (JSON ``FeatureConfig``), ``input``,
``min_samples``, ``window_frames`` (the predictor's window the graph averages,
``""``: none), ``min_frames`` and, from a checkpoint, ``model_name``, ``clip_frames``,
``temperature`` and ``unknown_threshold`` (the checkpoint's calibration: the
graph outputs the uncalibrated softmax ``p``; calibrated is
``softmax(log(p) / temperature)``, and ``"unknown"`` is the answer when its top
value is below ``unknown_threshold``, ``""`` meaning none);
:func:`read_metadata` returns them.

What the graph scores
---------------------
What ``predict`` scores (the torch predictor of
:mod:`soundclass.inference.predictor`, ``tta=1``): a sequence model with a
training window (the checkpoint's ``clip_frames``: the CNNs, ``seed-lstm``,
``aisfx``, ensembles) averages the logits of the predictor's windows of
``clip_frames`` frames over a clip at least one window long and scores a
shorter clip whole, or padded to one window when the model was trained on
batches padded to it (``window_frames`` and ``pads_to_window`` in the metadata);
every other model scores the whole clip.  A piece shorter than the model's
``min_frames`` (the PANNs-style CNNs) is padded to it with each feature row's
minimum, centred, as the predictor pads
(:class:`~soundclass.inference.waveform_graph.WindowedLogits`).  So the graph
gives ``predict``'s uncalibrated probabilities at every length.  Rows of one
batch have the same length, so batch clips of equal length (or score one at
a time): zero-padding a clip changes its features.

Short clips
-----------
With ``center=True`` every waveform of at least one sample gives
``1 + samples // hop_length`` frames, so a clip shorter than one STFT frame
(``n_fft`` samples) is still featured, as librosa does (zero padding).  Deltas
need 9 frames, so the graph first zero-pads (at the end, inside the graph)
every waveform shorter than ``min_samples`` (stored in the metadata) to that
length; longer waveforms pass unchanged.  For those short clips the result is
that of the padded clip (``compute_feature``, hence ``predict``, refuses
deltas of fewer than 9 frames).  The aiSFX
features of a clip shorter than one block (100 frames, 2.3 s) are zero-padded
to one block, as the numpy recipe does.
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
from soundclass.checkpoint.format import load_checkpoint, resolve_checkpoint
from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.errors import ExportError, ParameterError, SoundclassError, check_int
from soundclass.inference.calibration import calibration_of
from soundclass.inference.predictor import pads_short_clips
from soundclass.inference.waveform_graph import (
    WaveformClassifier,
    min_samples_for,
    probe_frames,
)
from soundclass.models.onnx_trace import short_reason, trace_to_onnx
from soundclass.util.atomic import write_bytes_atomic

try:
    from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as _TORCHSCRIPT_MAX_OPSET
except ImportError:  # a private constant; torch 2.1 .. 2.13 all reach at least 17
    _TORCHSCRIPT_MAX_OPSET = 17

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


def _probe_signals(sr: int, min_samples: int, long_samples: int = 0) -> list[np.ndarray]:
    """Check inputs: batches of chirp+noise of several lengths, a short clip, silence.

    ``long_samples > 0`` adds a clip of that length (several aiSFX blocks and windows).
    """
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
    ] + ([clip(long_samples, 5)[None]] if long_samples > 0 else [])


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
    return int(_TORCHSCRIPT_MAX_OPSET)


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
    clip_frames: int | None = None,
    pad_to_window: bool = False,
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
    input_kind, norm_mean, norm_std, clip_frames, pad_to_window
        See :class:`WaveformClassifier` (``clip_frames``: the predictor's
        window, whose windows the graph averages; ``None``, the default,
        scores whole clips).
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
    ExportError
        If the model does not run on the front end's output or torch cannot trace it.
    SoundclassError
        If onnxruntime disagrees with torch (or fails).
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
        model, feature, input_kind=input_kind, norm_mean=norm_mean, norm_std=norm_std,
        clip_frames=clip_frames, pad_to_window=pad_to_window,
    ).eval()
    long_frames = probe_frames(feature, clip_frames=clip_frames)
    signals = _probe_signals(feature.sr, module.min_samples,
                             min_samples_for(feature, min_frames=long_frames) if long_frames else 0)
    example = torch.from_numpy(signals[0])
    try:
        with torch.inference_mode():
            n_out = module(example).shape[-1]
    except Exception as exc:  # a shape mismatch is a RuntimeError deep inside torch
        raise ExportError(
            f"{out}: the model does not take the {feature.kind!r} front end's output "
            f"(features of {feature.n_features} rows) ({short_reason(exc)})"
        ) from exc
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
        "window_frames": "" if clip_frames is None else str(clip_frames),
        "pads_to_window": str(bool(pad_to_window and clip_frames is not None)).lower(),
        "min_frames": str(module.min_frames),
        "soundclass_version": __version__,
        **{str(k): str(v) for k, v in (metadata or {}).items()},
    }
    onnx.helper.set_model_props(proto, props)
    proto.doc_string = (
        f"soundclass: mono float32 waveform (batch, samples) at {feature.sr} Hz -> "
        f"class probabilities (batch, {len(classes)}); "
        + ("the whole clip is scored" if clip_frames is None
           else f"the logits of windows of {clip_frames} frames are averaged, as predict does"
           + ("; shorter clips are padded to one window" if pad_to_window else ""))
    )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise SoundclassError(f"{out}: exported graph is not valid ONNX ({exc})") from exc
    _save_onnx(proto, out)
    if check:
        try:
            check_onnx(module, out, signals)
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
    """Export a checkpoint (see :mod:`soundclass.checkpoint.format`) to one ONNX graph.

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
    ExportError
        ``model 'NAME' (checkpoint) cannot be exported to ONNX: why``.
    SoundclassError
        If the check fails.
    """
    ckpt = load_checkpoint(resolve_checkpoint(checkpoint_path))
    windows = ckpt.clip_frames if ckpt.input == "sequence" else None  # the predictor's window
    try:
        return export_model(
            ckpt.model,
            ckpt.feature,
            ckpt.classes,
            out_path,
            input_kind=ckpt.input,
            norm_mean=ckpt.norm_mean,
            norm_std=ckpt.norm_std,
            clip_frames=windows,
            pad_to_window=pads_short_clips(ckpt),
            opset=opset,
            check=check,
            metadata={
                "model_name": ckpt.model_name,
                # the checkpoint's window (the graph averages it: window_frames)
                "clip_frames": "" if ckpt.clip_frames is None else str(ckpt.clip_frames),
                **_calibration_metadata(ckpt),
            },
        )
    except ExportError as exc:
        raise ExportError(
            f"model {ckpt.model_name!r} ({ckpt.path}) cannot be exported to ONNX: {exc}"
        ) from exc


def _calibration_metadata(ckpt: Any) -> dict[str, str]:
    """``temperature`` and ``unknown_threshold`` (``""``: none) of a checkpoint, for ``metadata_props``.

    The graph's ``probabilities`` are the model's softmax; a consumer calibrates
    them as ``softmax(log(p) / temperature)`` and answers ``"unknown"`` when the
    top calibrated probability is below ``unknown_threshold``.
    """
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
        ``min_samples`` (int), ``min_frames`` (int), ``window_frames`` (int
        or None), ``pads_to_window`` (bool) and every other ``metadata_props``
        entry as str.

    Raises
    ------
    SoundclassError
        If the file is not an ONNX model exported by soundclass.
    """
    import onnx

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
    meta["min_frames"] = int(props.get("min_frames", "1"))
    meta["window_frames"] = int(props["window_frames"]) if props.get("window_frames") else None
    meta["pads_to_window"] = props.get("pads_to_window", "false") == "true"
    return meta
