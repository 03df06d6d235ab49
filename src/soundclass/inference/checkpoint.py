"""Checkpoints that carry their own configuration; never unpickled.

A checkpoint is a folder with two files:

- ``model.safetensors``: the model weights (``model.<name>``) and the
  standardization statistics (``norm.mean``, ``norm.std``) as tensors;
- ``model.json``: the format version, the soundclass version, the model name
  and keyword arguments, the input kind, the :class:`~soundclass.config.FeatureConfig`,
  the class names, the training config, ``clip_frames``, metrics, the
  creation time and, optionally, ``calibration`` (the temperature and the
  "unknown" threshold fitted on the validation split; older checkpoints
  without it load as ``temperature = 1``).

So a checkpoint alone says how to compute its inputs and how to rebuild its
model from the registry.  (The resumable training state is
:mod:`soundclass.training.state`.)
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundclass import __version__
from soundclass.config import FeatureConfig, config_to_dict
from soundclass.errors import CheckpointError, ParameterError, SoundclassError, check_positive_int
from soundclass.inference.checkpoint_checks import (
    MAX_CLIP_SECONDS,
    MAX_N_CLASSES,
    MODEL_PREFIX,
    check_architecture,
    check_calibration,
    check_feature_fits_model,
    check_finite,
    check_kwargs,
    feature_of,
    read_header,
)
from soundclass.inference.checkpoint_files import (
    read_json,
    read_tensors,
    saveable_tensor,
    write_json,
    write_tensors,
)

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "META_NAME",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "unwrap_model",
    "check_calibration",
]

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
INPUT_KINDS = ("sequence", "vector")

_NORM_MEAN = "norm.mean"
_NORM_STD = "norm.std"

@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the rebuilt model (eval mode) and everything about its inputs.

    Attributes
    ----------
    model : torch.nn.Module
        Rebuilt with ``create_model(model_name, n_classes=len(classes),
        n_features=feature.n_features, **model_kwargs)``, weights loaded, eval mode.
    model_name : str
    model_kwargs : dict
    input : {'sequence', 'vector'}
        ``(B, n_features, T)`` or ``(B, n_features)`` model input.
    feature : FeatureConfig
        How the model's input features are computed from a clip.
    classes : tuple of str
        Class names, in logit order.
    train_config : dict
        The resolved training configuration.
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
        Standardization applied to features before the model.
    clip_frames : int or None
        Window length (frames) of sequence models.
    metrics : dict
        Validation metrics recorded when saved.
    path : pathlib.Path
        The checkpoint folder.
    meta : dict
        The whole ``model.json``.
    """

    model: torch.nn.Module
    model_name: str
    model_kwargs: dict
    input: str
    feature: FeatureConfig
    classes: tuple[str, ...]
    train_config: dict
    norm_mean: np.ndarray | None
    norm_std: np.ndarray | None
    clip_frames: int | None
    metrics: dict
    path: Path
    meta: dict

    @property
    def n_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- helpers


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The underlying module of a ``DistributedDataParallel``/``DataParallel`` wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def _json_safe(value: Any, what: str) -> Any:
    """``value`` as plain JSON types (numpy scalars/arrays, paths, tuples converted)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v, what) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v, what) for v in value]
    raise ParameterError(f"{what}: value {value!r} of type {type(value).__name__} is not JSON-serializable")


def _stat(value: Any, name: str) -> torch.Tensor | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim != 1:
        raise ParameterError(f"{name} must be 1-D (n_features,), got shape {arr.shape}")
    return torch.from_numpy(arr.copy())


# --------------------------------------------------------------------------- checkpoint


def save_checkpoint(
    out_dir: str | os.PathLike,
    model: torch.nn.Module,
    *,
    model_name: str,
    model_kwargs: Mapping[str, Any] | None,
    feature: FeatureConfig,
    classes: Sequence[str],
    train_config: Any,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
    clip_frames: int | None = None,
    metrics: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/model.safetensors`` and ``out_dir/model.json``.

    Parameters
    ----------
    out_dir : path
        Folder to create (or overwrite files in).
    model : torch.nn.Module
        The model (a DDP wrapper is unwrapped).  It must be rebuildable with
        ``create_model(model_name, n_classes=len(classes),
        n_features=feature.n_features, **model_kwargs)``.
    model_name : str
        Registry name of the model.
    model_kwargs : dict or None
        Extra keyword arguments of ``create_model`` (JSON-able).
    feature : FeatureConfig
        The feature the model takes.
    classes : sequence of str
        Class names in logit order.
    train_config : dataclass or dict
        The resolved training config (stored as a dict).
    norm_mean, norm_std : np.ndarray [shape=(n_features,)], optional
        Standardization statistics, stored as tensors.
    clip_frames : int, optional
        Window length in frames for sequence models.
    metrics : dict, optional
        Metrics to record (JSON-able).
    calibration : dict, optional
        ``{"temperature": T, "unknown_threshold": thr or None, ...}`` (see
        :func:`check_calibration`); without it the checkpoint loads with ``T = 1``.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    if not isinstance(feature, FeatureConfig):
        raise ParameterError(f"feature must be a FeatureConfig, got {type(feature).__name__}")
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise ParameterError("classes must not be empty")
    if clip_frames is not None:  # 2.5 is refused, not truncated to 2
        clip_frames = check_positive_int("clip_frames", clip_frames)
    if (norm_mean is None) != (norm_std is None):
        raise ParameterError("norm_mean and norm_std must be given together")
    model = unwrap_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tensors = {MODEL_PREFIX + k: saveable_tensor(v) for k, v in model.state_dict().items()}
    mean, std = _stat(norm_mean, "norm_mean"), _stat(norm_std, "norm_std")
    if mean is not None:
        tensors[_NORM_MEAN] = mean
        tensors[_NORM_STD] = std
    if dataclasses.is_dataclass(train_config) and not isinstance(train_config, type):
        train_dict = config_to_dict(train_config)
    else:
        train_dict = dict(train_config or {})
    meta = {
        "format": "soundclass-checkpoint",
        "format_version": FORMAT_VERSION,
        "soundclass_version": __version__,
        "torch_version": torch.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_name": str(model_name),
        "model_kwargs": _json_safe(dict(model_kwargs or {}), "model_kwargs"),
        "input": _input_kind(model_name, feature),
        "feature": config_to_dict(feature),
        "classes": list(classes),
        "train_config": _json_safe(train_dict, "train_config"),
        "clip_frames": None if clip_frames is None else int(clip_frames),
        "has_norm": mean is not None,
        "metrics": _json_safe(dict(metrics or {}), "metrics"),
    }
    if calibration is not None:
        meta["calibration"] = check_calibration(calibration, out / META_NAME)
    write_tensors(out / WEIGHTS_NAME, tensors, metadata={"format": "pt", "soundclass": __version__})
    write_json(out / META_NAME, meta)
    return out


def _input_kind(model_name: str, feature: FeatureConfig) -> str:
    """The registered spec's input kind; from the feature's pooling if unregistered."""
    try:
        from soundclass.models import model_spec

        return model_spec(model_name).input
    except (ImportError, KeyError, SoundclassError):
        return "vector" if feature.pooling == "mean" else "sequence"


def checkpoint_dir(path: str | os.PathLike) -> Path:
    """The checkpoint folder of ``path`` (the folder itself, or the folder of its ``model.json``/weights)."""
    p = Path(path)
    if p.name in (WEIGHTS_NAME, META_NAME):
        return p.parent
    if p.suffix in (".json", ".safetensors"):
        raise CheckpointError(f"{p}: expected a checkpoint folder, {META_NAME} or {WEIGHTS_NAME}")
    return p


def _require(meta: dict, key: str, types: type | tuple[type, ...], where: Path) -> Any:
    if key not in meta:
        raise CheckpointError(f"{where}: missing field {key!r}")
    value = meta[key]
    if not isinstance(value, types):
        raise CheckpointError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The validated ``model.json`` of a checkpoint, without building the model.

    Besides the format, every value that decides an allocation is bounded:
    ``len(classes) <= MAX_N_CLASSES``; every number in ``model_kwargs`` finite
    with ``|value| <= MAX_KWARG_INT`` (lists/dicts at most ``MAX_KWARG_ITEMS``
    long, ``MAX_KWARG_DEPTH`` deep); the feature's ``sr`` within
    ``FEATURE_SR_RANGE``, ``n_fft``/``hop_length``/``win_length`` at most
    ``MAX_FEATURE_N_FFT``, ``n_features <= MAX_N_FEATURES``; ``clip_frames`` a
    positive integer of at most ``MAX_CLIP_SECONDS`` of audio.  The feature
    must fit the model (see :func:`check_feature_fits_model`).

    Raises
    ------
    CheckpointError
        Naming ``model.json`` and the offending field.
    """
    meta_path = checkpoint_dir(path) / META_NAME
    meta = read_json(meta_path)
    if meta.get("format") != "soundclass-checkpoint":
        raise CheckpointError(f"{meta_path}: not a soundclass checkpoint (format={meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(
            f"{meta_path}: format_version={version!r} is not supported (this soundclass reads <= {FORMAT_VERSION})"
        )
    _require(meta, "model_name", str, meta_path)
    _require(meta, "model_kwargs", dict, meta_path)
    _require(meta, "feature", dict, meta_path)
    classes = _require(meta, "classes", list, meta_path)
    if not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{meta_path}: 'classes' must be a non-empty list of names")
    if meta.get("input") not in INPUT_KINDS:
        raise CheckpointError(f"{meta_path}: input={meta.get('input')!r} must be one of {INPUT_KINDS}")
    if len(classes) > MAX_N_CLASSES:
        raise CheckpointError(f"{meta_path}: {len(classes)} classes (at most {MAX_N_CLASSES})")
    check_kwargs(meta["model_kwargs"], meta_path)
    feature = feature_of(meta, meta_path)
    clip = meta.get("clip_frames")
    if clip is not None and (not isinstance(clip, int) or isinstance(clip, bool) or clip <= 0):
        raise CheckpointError(f"{meta_path}: clip_frames={clip!r} must be a positive integer or null")
    max_clip = max(1, int(MAX_CLIP_SECONDS * feature.frame_rate))
    if clip is not None and clip > max_clip:
        raise CheckpointError(
            f"{meta_path}: clip_frames={clip} is above {max_clip} "
            f"({MAX_CLIP_SECONDS:g} s at {feature.frame_rate:g} frames/s)"
        )
    check_feature_fits_model(meta, feature, meta_path)
    if meta.get("calibration") is not None:
        check_calibration(meta["calibration"], meta_path)
    return meta


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild a model and its input description from a checkpoint.

    Parameters
    ----------
    path : path
        The checkpoint folder, its ``model.json`` or its ``model.safetensors``.
    device : str or torch.device
        Where to put the model.

    Returns
    -------
    Checkpoint
        With the model in eval mode.

    Raises
    ------
    CheckpointError
        If a file is missing or corrupt, a value is out of bounds (see
        :func:`read_checkpoint_meta`), the model name is not registered, the
        weights' header does not fit the model rebuilt on the ``meta`` device
        (checked before any tensor is allocated; at most ``MAX_PARAMETERS``
        values), or a weight is NaN/Inf; the message names the file (and the
        field or tensor).
    """
    folder = checkpoint_dir(path)
    meta = read_checkpoint_meta(folder)
    meta_path, weights_path = folder / META_NAME, folder / WEIGHTS_NAME
    feature = feature_of(meta, meta_path)
    classes = tuple(meta["classes"])
    name, kwargs = meta["model_name"], dict(meta["model_kwargs"])

    from soundclass.models import create_model, list_models

    if name not in list_models():
        raise CheckpointError(
            f"{meta_path}: unknown model {name!r} (registered: {', '.join(sorted(list_models()))})"
        )
    # Validated before any real tensor exists: header size, then the architecture on 'meta'.
    shapes = read_header(weights_path)
    check_architecture(name, kwargs, len(classes), feature, shapes, meta_path, weights_path)
    try:
        model = create_model(name, n_classes=len(classes), n_features=feature.n_features, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {kwargs} ({exc})") from exc

    tensors = read_tensors(weights_path)
    check_finite(tensors, weights_path)
    state = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights_path}: weights do not fit model {name!r}: {exc}") from exc
    model.to(device).eval()

    norm_mean = norm_std = None
    if meta.get("has_norm"):
        if _NORM_MEAN not in tensors or _NORM_STD not in tensors:
            raise CheckpointError(f"{weights_path}: missing {_NORM_MEAN}/{_NORM_STD} tensors")
        norm_mean = tensors[_NORM_MEAN].numpy().astype(np.float32)
        norm_std = tensors[_NORM_STD].numpy().astype(np.float32)
        for arr, key in ((norm_mean, _NORM_MEAN), (norm_std, _NORM_STD)):
            if arr.shape != (feature.n_features,):
                raise CheckpointError(
                    f"{weights_path}: {key} has shape {arr.shape}, expected ({feature.n_features},)"
                )
    return Checkpoint(
        model=model,
        model_name=name,
        model_kwargs=kwargs,
        input=meta["input"],
        feature=feature,
        classes=classes,
        train_config=dict(meta.get("train_config") or {}),
        norm_mean=norm_mean,
        norm_std=norm_std,
        clip_frames=meta.get("clip_frames"),
        metrics=dict(meta.get("metrics") or {}),
        path=folder,
        meta=meta,
    )
