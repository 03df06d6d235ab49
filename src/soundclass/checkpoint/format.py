"""The checkpoint format: a folder with ``model.safetensors`` + ``model.json``, never unpickled.

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
model from the registry.  :func:`resolve_checkpoint` finds it in a run folder
and :func:`as_checkpoint` loads a path.  (The resumable training state is
:mod:`soundclass.checkpoint.state`; both are written and read through
:mod:`soundclass.checkpoint.files`.)

Validation: a ``model.json`` or ``model.safetensors`` may come from anywhere
(a download, a shared folder), so :func:`read_checkpoint_meta` and
:func:`load_checkpoint` bound everything that sizes an allocation (classes,
architecture kwargs, feature settings, ``clip_frames``), compare the model
that the kwargs describe, built on the ``meta`` device, with the tensor
shapes in the safetensors header (:func:`check_architecture`), and refuse
NaN/Inf weights.  Every failure is a :class:`~soundclass.errors.CheckpointError`
naming the file.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from soundclass import __version__
from soundclass.checkpoint.files import (
    read_json,
    read_tensors,
    saveable_tensor,
    write_json,
    write_tensors,
)
from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.errors import CheckpointError, ParameterError, SoundclassError, check_positive_int
from soundclass.models import create_model, list_models, model_spec

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "META_NAME",
    "Checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "unwrap_model",
    "check_calibration",
    "check_architecture",
    "check_feature_fits_model",
    "checkpoint_dir",
    "read_checkpoint_meta",
    "resolve_checkpoint",
    "as_checkpoint",
]

#: Prefix of the model's tensors in ``model.safetensors`` (the norm statistics have their own).
MODEL_PREFIX = "model."

# Bounds a checkpoint must respect before any tensor is built (see ``read_checkpoint_meta``).
# Generous for every registered model (CNN14 with AudioSet's 527 classes: 80.8 M
# parameters), far below what a tampered ``model.json`` could make torch allocate.
MAX_PARAMETERS = 250_000_000  # 1 GB of float32 weights
MAX_N_CLASSES = 100_000
MAX_N_FEATURES = 8192  # the largest built-in: fusion-probe, 4608
MAX_KWARG_INT = 65_536  # any integer in model_kwargs (channels, hidden sizes, layers ...)
MAX_KWARG_ITEMS = 256  # entries of any list/dict in model_kwargs
MAX_KWARG_DEPTH = 4  # nesting of lists/dicts in model_kwargs
MAX_CLIP_SECONDS = 600.0  # clip_frames <= MAX_CLIP_SECONDS * feature.frame_rate
FEATURE_SR_RANGE = (1_000, 768_000)  # Hz
MAX_FEATURE_N_FFT = 65_536  # also bounds hop_length and win_length


def check_kwargs(value: Any, where: Path, key: str = "model_kwargs", depth: int = 0) -> None:
    """Refuse model_kwargs that no sane architecture has (huge ints, long lists, non-finite)."""
    if depth > MAX_KWARG_DEPTH:
        raise CheckpointError(f"{where}: {key} is nested more than {MAX_KWARG_DEPTH} levels deep")
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return
    if isinstance(value, int):
        if abs(value) > MAX_KWARG_INT:
            raise CheckpointError(
                f"{where}: {key}={value} is out of bounds (|value| <= {MAX_KWARG_INT} for model_kwargs)"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value) or abs(value) > MAX_KWARG_INT:
            raise CheckpointError(
                f"{where}: {key}={value!r} must be finite with |value| <= {MAX_KWARG_INT}"
            )
        return
    if isinstance(value, (list, dict)):
        if len(value) > MAX_KWARG_ITEMS:
            raise CheckpointError(f"{where}: {key} has {len(value)} entries (at most {MAX_KWARG_ITEMS})")
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            check_kwargs(v, where, f"{key}[{k!r}]", depth + 1)
        return
    raise CheckpointError(f"{where}: {key} has unsupported type {type(value).__name__}")


def check_feature(feature: FeatureConfig, where: Path) -> None:
    """Refuse feature settings that would make extraction allocate without bound."""
    lo, hi = FEATURE_SR_RANGE
    if not lo <= feature.sr <= hi:
        raise CheckpointError(f"{where}: feature sr={feature.sr} is outside [{lo}, {hi}] Hz")
    for name in ("n_fft", "hop_length", "win_length"):
        value = getattr(feature, name)
        if value is not None and value > MAX_FEATURE_N_FFT:
            raise CheckpointError(f"{where}: feature {name}={value} is above {MAX_FEATURE_N_FFT}")
    if feature.n_features > MAX_N_FEATURES:
        raise CheckpointError(
            f"{where}: feature has n_features={feature.n_features} rows (at most {MAX_N_FEATURES})"
        )


def feature_of(meta: dict, where: Path) -> FeatureConfig:
    try:
        feature = config_from_dict(FeatureConfig, meta["feature"])
    except (ParameterError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: invalid feature config ({exc})") from exc
    check_feature(feature, where)
    return feature


def feature_differences(a: FeatureConfig, b: FeatureConfig) -> list[str]:
    da, db = config_to_dict(a), config_to_dict(b)
    return [f"{k}={da[k]!r} (expected {db.get(k)!r})" for k in da if da[k] != db.get(k)]


def check_feature_fits_model(meta: dict, feature: FeatureConfig, where: Path) -> None:
    """The feature against what the model and the training record fix.

    - the input kind and pooling of a registered model are fixed by its
      :class:`~soundclass.models.ModelSpec`: a mismatch is an error;
    - a trained checkpoint records the feature it was trained on twice
      (``feature`` and ``train_config.feature_config``): if they differ, one of
      them was edited, and the model would get inputs it never saw: an error;
    - ``n_mels``/``n_mfcc``/``deltas`` are fixed by the weights' shapes
      (checked when the model is rebuilt on the meta device);
    - ``sr``, ``hop_length`` and the other settings are user choices at
      training time (``--feature``), so without a training record a
      difference from the spec's default feature is allowed silently.
    """
    name = meta["model_name"]
    if name in list_models():
        spec = model_spec(name)
        if meta["input"] != spec.input:
            raise CheckpointError(
                f"{where}: input={meta['input']!r} but model {name!r} takes {spec.input!r} input"
            )
        if feature.pooling != spec.feature.pooling:
            raise CheckpointError(
                f"{where}: feature pooling={feature.pooling!r} does not fit model {name!r} "
                f"({spec.input} input needs pooling={spec.feature.pooling!r})"
            )
    record = (meta.get("train_config") or {}).get("feature_config")
    if isinstance(record, dict):
        try:
            trained = config_from_dict(FeatureConfig, record)
        except (ParameterError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: invalid train_config.feature_config ({exc})") from exc
        diff = feature_differences(feature, trained)
        if diff:
            raise CheckpointError(
                f"{where}: feature differs from the one the model was trained on "
                f"(train_config.feature_config): {', '.join(diff)}"
            )



def read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors header, without reading any tensor."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        with safe_open(str(path), framework="pt") as fh:
            shapes = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from exc
    total = sum(math.prod(shape) for shape in shapes.values())
    if total > MAX_PARAMETERS:
        raise CheckpointError(f"{path}: holds {total:,} values (at most {MAX_PARAMETERS:,})")
    return shapes


def check_architecture(name: str, kwargs: dict, n_classes: int, feature: FeatureConfig,
                        shapes: dict[str, tuple[int, ...]], meta_path: Path,
                        weights_path: Path) -> None:
    """Build the model on the meta device (no memory) and compare it with the weights' header."""
    try:
        with torch.device("meta"):
            skeleton = create_model(name, n_classes=n_classes, n_features=feature.n_features, **kwargs)
    except Exception as exc:  # any builder failure on user-supplied kwargs is the checkpoint's fault
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {kwargs} ({exc})") from exc
    n_params = sum(p.numel() for p in skeleton.parameters())
    if n_params > MAX_PARAMETERS:
        raise CheckpointError(
            f"{meta_path}: model {name!r} with {kwargs} would have {n_params:,} parameters "
            f"(at most {MAX_PARAMETERS:,})"
        )
    expected = {MODEL_PREFIX + k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    stored = {k: v for k, v in shapes.items() if k.startswith(MODEL_PREFIX)}
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = [f"{k} {stored[k]} (expected {expected[k]})" for k in sorted(set(expected) & set(stored))
             if stored[k] != expected[k]]
    if missing or extra or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", extra), ("wrong shape", wrong)):
            if keys:
                parts.append(f"{what}: {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else ""))
        raise CheckpointError(
            f"{weights_path}: weights do not fit model {name!r} with {kwargs} "
            f"as described by {meta_path.name} ({'; '.join(parts)})"
        )


def check_finite(tensors: Mapping[str, torch.Tensor], where: Path) -> None:
    for key, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{where}: tensor {key!r} holds {bad} NaN/Inf value(s)")


# --------------------------------------------------------------------------- calibration

_CALIBRATION_NUMBERS = ("ece", "ece_calibrated", "log_loss", "log_loss_calibrated")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_calibration(calibration: Mapping[str, Any], where: str | os.PathLike = "calibration") -> dict:
    """A validated copy of a checkpoint's ``calibration`` entry.

    Keys: ``temperature`` (required, in (0, 100]), ``unknown_threshold``
    (``None`` or in [0, 1 + 1e-9]), ``target_precision`` (``None`` or in (0,
    1]), ``precision_thresholds`` (``{"0.90": thr, ...}``), and the numbers
    ``ece``, ``ece_calibrated``, ``log_loss``, ``log_loss_calibrated``,
    ``n`` (the validation clips they were measured on).

    Raises
    ------
    CheckpointError
        Naming ``where`` and the field.
    """
    if not isinstance(calibration, Mapping):
        raise CheckpointError(f"{where}: 'calibration' must be a mapping")
    cal = dict(calibration)
    t = cal.get("temperature")
    if not (_is_number(t) and 0 < t <= 100):
        raise CheckpointError(f"{where}: calibration temperature={t!r} must be a number in (0, 100]")
    thr = cal.get("unknown_threshold")
    if thr is not None and not (_is_number(thr) and 0 <= thr <= 1 + 1e-9):
        raise CheckpointError(f"{where}: calibration unknown_threshold={thr!r} must be in [0, 1] or null")
    q = cal.get("target_precision")
    if q is not None and not (_is_number(q) and 0 < q <= 1):
        raise CheckpointError(f"{where}: calibration target_precision={q!r} must be in (0, 1] or null")
    table = cal.get("precision_thresholds") or {}
    if not isinstance(table, Mapping) or len(table) > 1000 or not all(
        _is_number(v) and 0 <= v <= 1 + 1e-9 for v in table.values()
    ):
        raise CheckpointError(f"{where}: calibration precision_thresholds must map precisions to thresholds")
    try:
        cal["precision_thresholds"] = {f"{float(k):.2f}": float(v) for k, v in table.items()}
    except ValueError:
        raise CheckpointError(f"{where}: calibration precision_thresholds keys must be numbers") from None
    for key in _CALIBRATION_NUMBERS:
        if cal.get(key) is not None and not _is_number(cal[key]):
            raise CheckpointError(f"{where}: calibration {key}={cal[key]!r} must be a finite number or null")
    if cal.get("note") is not None and not isinstance(cal["note"], str):
        raise CheckpointError(f"{where}: calibration note must be a string or null")
    cal["temperature"] = float(t)
    return cal


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


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint folder for a checkpoint folder or a training run folder.

    Accepts ``RUN_DIR`` (containing ``checkpoint/model.json``), the checkpoint
    folder itself, or its ``model.json``.

    Raises
    ------
    CheckpointError
        If neither holds a ``model.json``.
    """
    p = Path(path)
    if p.name == "model.json" and p.is_file():
        return p.parent
    for candidate in (p, p / "checkpoint"):
        if (candidate / "model.json").is_file():
            return candidate
    raise CheckpointError(f"{p}: no checkpoint here (expected model.json in it or in {p / 'checkpoint'})")


def as_checkpoint(checkpoint: Any) -> Any:
    """``checkpoint`` loaded, if it is a path.

    Parameters
    ----------
    checkpoint : Checkpoint or path
        A loaded :class:`Checkpoint` (returned
        as is), or a checkpoint folder, its ``model.json`` or a training run
        folder (see :func:`resolve_checkpoint`).

    Returns
    -------
    Checkpoint

    Raises
    ------
    CheckpointError
        No checkpoint at the path, or one that does not load.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        return load_checkpoint(resolve_checkpoint(checkpoint))
    return checkpoint
