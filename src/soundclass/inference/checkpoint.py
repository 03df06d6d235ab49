"""Checkpoints that carry their own configuration; never unpickled.

A checkpoint is a folder with two files:

- ``model.safetensors``: the model weights (``model.<name>``) and the
  standardization statistics (``norm.mean``, ``norm.std``) as tensors;
- ``model.json``: the format version, the soundclass version, the model name
  and keyword arguments, the input kind, the :class:`~soundclass.config.FeatureConfig`,
  the class names, the training config, ``clip_frames``, metrics and the
  creation time.

So a checkpoint alone says how to compute its inputs and how to rebuild its
model from the registry.  The resumable training state (optimizer, scheduler,
epoch, RNG states, history, early stopping) is stored the same way, without
pickle: every tensor goes to ``training_state.safetensors`` and the rest,
including tuples and integer-keyed dicts, to ``training_state.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from soundclass import __version__
from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.errors import CheckpointError, ParameterError, SoundclassError

__all__ = [
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "META_NAME",
    "STATE_WEIGHTS_NAME",
    "STATE_META_NAME",
    "Checkpoint",
    "TrainingState",
    "save_checkpoint",
    "load_checkpoint",
    "save_training_state",
    "load_training_state",
    "unwrap_model",
]

FORMAT_VERSION = 1
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
STATE_WEIGHTS_NAME = "training_state.safetensors"
STATE_META_NAME = "training_state.json"
INPUT_KINDS = ("sequence", "vector")

_MODEL_PREFIX = "model."
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


@dataclass(frozen=True)
class TrainingState:
    """The resumable part of a training run (see :func:`save_training_state`).

    ``model_state``, ``optimizer_state`` and ``scheduler_state`` are the
    ``state_dict()`` of each; ``rng_state`` holds ``torch`` and ``numpy`` RNG
    states; ``extra`` anything else JSON-able the caller stored (history,
    early stopping, ...).
    """

    epoch: int
    model_state: dict
    optimizer_state: dict | None
    scheduler_state: dict | None
    rng_state: dict
    extra: dict


# --------------------------------------------------------------------------- helpers


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The underlying module of a ``DistributedDataParallel``/``DataParallel`` wrapper."""
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
        model = model.module
    return model


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _atomic_write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=2, sort_keys=False, allow_nan=True)
    _atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def _atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def _to_saveable(t: torch.Tensor) -> torch.Tensor:
    # clone: safetensors refuses tensors that share storage (tied weights, views)
    return t.detach().to("cpu").contiguous().clone()


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
    if clip_frames is not None and (isinstance(clip_frames, bool) or int(clip_frames) <= 0):
        raise ParameterError(f"clip_frames={clip_frames!r} must be a positive integer or None")
    if (norm_mean is None) != (norm_std is None):
        raise ParameterError("norm_mean and norm_std must be given together")
    model = unwrap_model(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    tensors = {_MODEL_PREFIX + k: _to_saveable(v) for k, v in model.state_dict().items()}
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
    _atomic_save_tensors(out / WEIGHTS_NAME, tensors, {"format": "pt", "soundclass": __version__})
    _atomic_write_json(out / META_NAME, meta)
    return out


def _input_kind(model_name: str, feature: FeatureConfig) -> str:
    """The registered spec's input kind; from the feature's pooling if unregistered."""
    try:
        from soundclass.models import model_spec

        return model_spec(model_name).input
    except (ImportError, KeyError, SoundclassError):
        return "vector" if feature.pooling == "mean" else "sequence"


def _checkpoint_dir(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.name in (WEIGHTS_NAME, META_NAME):
        return p.parent
    if p.suffix in (".json", ".safetensors"):
        raise CheckpointError(f"{p}: expected a checkpoint folder, {META_NAME} or {WEIGHTS_NAME}")
    return p


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from exc


def _require(meta: dict, key: str, types: type | tuple[type, ...], where: Path) -> Any:
    if key not in meta:
        raise CheckpointError(f"{where}: missing field {key!r}")
    value = meta[key]
    if not isinstance(value, types):
        raise CheckpointError(f"{where}: field {key!r} has type {type(value).__name__}")
    return value


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The validated ``model.json`` of a checkpoint, without building the model."""
    meta_path = _checkpoint_dir(path) / META_NAME
    meta = _read_json(meta_path)
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
    clip = meta.get("clip_frames")
    if clip is not None and (not isinstance(clip, int) or isinstance(clip, bool) or clip <= 0):
        raise CheckpointError(f"{meta_path}: clip_frames={clip!r} must be a positive integer or null")
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
        If a file is missing or corrupt, the model name is not registered, or
        the weights do not fit the rebuilt model; the message names the file.
    """
    folder = _checkpoint_dir(path)
    meta = read_checkpoint_meta(folder)
    meta_path, weights_path = folder / META_NAME, folder / WEIGHTS_NAME
    try:
        feature = config_from_dict(FeatureConfig, meta["feature"])
    except (ParameterError, TypeError) as exc:
        raise CheckpointError(f"{meta_path}: invalid feature config ({exc})") from exc
    classes = tuple(meta["classes"])
    name, kwargs = meta["model_name"], dict(meta["model_kwargs"])

    from soundclass.models import create_model, list_models

    if name not in list_models():
        raise CheckpointError(
            f"{meta_path}: unknown model {name!r} (registered: {', '.join(sorted(list_models()))})"
        )
    try:
        model = create_model(name, n_classes=len(classes), n_features=feature.n_features, **kwargs)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{meta_path}: cannot rebuild model {name!r} with {kwargs} ({exc})") from exc

    tensors = _read_tensors(weights_path)
    state = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
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


# --------------------------------------------------------------------------- training state
#
# Nested state dicts are split into tensors (to safetensors) and a JSON tree in
# which a tensor is {"__tensor__": key}, a tuple {"__tuple__": [...]}, a dict
# with non-string keys {"__items__": [[key, value], ...]} and a non-finite
# float {"__float__": "nan" | "inf" | "-inf"}.


def _encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = _to_saveable(obj)
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__tensor__": prefix, "numpy": True}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {
            "__items__": [
                [_encode(k, f"{prefix}.k{i}", tensors), _encode(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise ParameterError(f"training state at {prefix!r}: cannot store {type(obj).__name__} without pickle")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"{where}: tensor {key!r} missing from {STATE_WEIGHTS_NAME}")
        t = tensors[key]
        return t.numpy() if obj.get("numpy") else t
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in obj["__items__"]}
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def capture_rng_state() -> dict:
    """The global ``torch`` RNG state (dropout etc.); numpy randomness uses explicit generators."""
    return {"torch": torch.get_rng_state()}


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))


def save_training_state(
    out_dir: str | os.PathLike,
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the resumable state to ``out_dir/training_state.{safetensors,json}``.

    Parameters
    ----------
    out_dir : path
        Folder (created).
    epoch : int
        The last completed epoch (0-based).
    model : torch.nn.Module
        Its ``state_dict`` is stored (DDP wrappers unwrapped).
    optimizer, scheduler : optional
        Their ``state_dict()`` is stored.
    rng_state : dict, optional
        Defaults to :func:`capture_rng_state`; may also hold generator states.
    extra : dict, optional
        History, early-stopping state, config ... (JSON-able, tensors allowed).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = {
        "format": "soundclass-training-state",
        "format_version": FORMAT_VERSION,
        "epoch": int(epoch),
        "model": _encode(unwrap_model(model).state_dict(), "model", tensors),
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", tensors),
        "rng": _encode(dict(rng_state if rng_state is not None else capture_rng_state()), "rng", tensors),
        "extra": _encode(dict(extra or {}), "extra", tensors),
    }
    _atomic_save_tensors(out / STATE_WEIGHTS_NAME, tensors, {"format": "pt"})
    _atomic_write_json(out / STATE_META_NAME, tree)
    return out


def load_training_state(path: str | os.PathLike) -> TrainingState:
    """Read what :func:`save_training_state` wrote (``path`` = the folder).

    Raises
    ------
    CheckpointError
        If a file is missing or corrupt.
    """
    folder = Path(path)
    meta_path = folder / STATE_META_NAME
    tree = _read_json(meta_path)
    if tree.get("format") != "soundclass-training-state":
        raise CheckpointError(f"{meta_path}: not a soundclass training state")
    if not isinstance(tree.get("epoch"), int):
        raise CheckpointError(f"{meta_path}: missing integer field 'epoch'")
    tensors = _read_tensors(folder / STATE_WEIGHTS_NAME)
    return TrainingState(
        epoch=tree["epoch"],
        model_state=_decode(tree.get("model") or {}, tensors, meta_path),
        optimizer_state=_decode(tree.get("optimizer"), tensors, meta_path),
        scheduler_state=_decode(tree.get("scheduler"), tensors, meta_path),
        rng_state=_decode(tree.get("rng") or {}, tensors, meta_path),
        extra=_decode(tree.get("extra") or {}, tensors, meta_path),
    )
