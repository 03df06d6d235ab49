"""Checks a model checkpoint must pass before any tensor is built from it.

A ``model.json`` or ``model.safetensors`` may come from anywhere (a download, a
shared folder), so :func:`soundclass.inference.checkpoint.read_checkpoint_meta`
and :func:`~soundclass.inference.checkpoint.load_checkpoint` bound everything
that sizes an allocation (classes, architecture kwargs, feature settings,
``clip_frames``), compare the model that the kwargs describe, built on the
``meta`` device, with the tensor shapes in the safetensors header, and refuse
NaN/Inf weights.  Every failure is a :class:`~soundclass.errors.CheckpointError`
naming the file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.errors import CheckpointError, ParameterError

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
    try:
        from soundclass.models import list_models, model_spec
    except ImportError:  # pragma: no cover - the models stage is part of the package
        return
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
    from soundclass.models import create_model

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
