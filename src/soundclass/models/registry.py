"""A tiny model registry (timm-like): a name maps to a builder and a spec.

A builder is a function ``builder(*, n_classes, n_features, **kwargs) -> nn.Module``
registered with :func:`register_model`; a variant is one line of kwargs::

    register_model("cnn-wide", spec=CNN_SPEC)(partial(PannsCNN, channels=(64, 128, 256, 256)))

:func:`create_model` builds it, :func:`model_spec` says which feature it
consumes, how its inputs look, and the training defaults that make it what it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "INPUT_KINDS",
    "TRAIN_KEYS",
    "ModelSpec",
    "register_model",
    "register",
    "create_model",
    "list_models",
    "model_spec",
]

INPUT_KINDS = ("sequence", "vector")

# Keys a spec's ``train`` defaults may use; the trainer merges them under user overrides.
# Type, range, help and fallback of each are the TrainConfig field's Setting
# (soundclass.training.config, which checks at import that the settings with a
# fallback default are exactly these); the registry sits below training, so
# the names are listed here, once.
TRAIN_KEYS = (
    "epochs", "batch_size", "lr", "weight_decay", "optimizer", "scheduler", "warmup", "patience",
    "monitor", "balance", "mixup_alpha", "spec_augment", "freq_warp", "time_stretch", "label_smoothing",
)

Builder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What a registered model consumes and how it is trained by default.

    Parameters
    ----------
    feature : FeatureConfig
        The feature the model consumes by default (the cache key of its inputs).
    input : {'sequence', 'vector'}
        ``'sequence'``: ``x`` is ``(B, n_features, T)``; ``'vector'``: ``(B, n_features)``.
    clip_seconds : float or None
        Training crop length in seconds; ``None`` lets the trainer decide from the data.
    standardize : bool
        Whether the trainer standardizes each feature row with training-set mean/std.
    train : Mapping
        Training defaults (keys from :data:`TRAIN_KEYS`), merged under user overrides.
    description : str
        One line for ``--help`` and reports.
    """

    feature: FeatureConfig
    input: str = "sequence"
    clip_seconds: float | None = None
    standardize: bool = False
    train: Mapping[str, Any] = field(default_factory=dict, hash=False)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.feature, FeatureConfig):
            raise ParameterError(f"feature={self.feature!r} must be a FeatureConfig")
        if self.input not in INPUT_KINDS:
            raise ParameterError(f"input={self.input!r} must be one of {INPUT_KINDS}")
        if self.input == "vector" and self.feature.pooling != "mean":
            raise ParameterError("input='vector' needs a feature with pooling='mean'")
        if self.input == "sequence" and self.feature.pooling != "none":
            raise ParameterError("input='sequence' needs a feature with pooling='none'")
        if self.clip_seconds is not None and not self.clip_seconds > 0:
            raise ParameterError(f"clip_seconds={self.clip_seconds!r} must be positive or None")
        unknown = sorted(set(self.train) - set(TRAIN_KEYS))
        if unknown:
            raise ParameterError(f"unknown train default(s) {unknown}; choose from {TRAIN_KEYS}")
        object.__setattr__(self, "train", dict(self.train))  # own copy


_BUILDERS: dict[str, Builder] = {}
_SPECS: dict[str, ModelSpec] = {}


def register_model(name: str, *, spec: ModelSpec) -> Callable[[Builder], Builder]:
    """Decorator putting ``builder`` into the registry under ``name``.

    Parameters
    ----------
    name : str
        Registry name, e.g. ``'cnn'``; must be new.
    spec : ModelSpec
        Its default feature, input kind and training defaults.
    """
    if not isinstance(spec, ModelSpec):
        raise ParameterError(f"spec={spec!r} must be a ModelSpec")

    def decorator(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ParameterError(f"model {name!r} is already registered")
        _BUILDERS[name] = builder
        _SPECS[name] = spec
        return builder

    return decorator


register = register_model  # the short name used in docs/architecture.md


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise ParameterError(f"unknown model {name!r}; choose from {', '.join(list_models())}")


def list_models() -> list[str]:
    """Sorted names of every registered model."""
    return sorted(_BUILDERS)


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of a registered model."""
    _check_name(name)
    return _SPECS[name]


def create_model(name: str, *, n_classes: int, n_features: int, **kwargs: Any) -> nn.Module:
    """Build a registered model.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    n_classes : int
        Number of output logits.
    n_features : int
        Rows of the input feature (``model_spec(name).feature.n_features`` by default).
    **kwargs
        Passed to the builder (architecture options).

    Returns
    -------
    torch.nn.Module
        Maps ``(B, n_features, T)`` (sequence) or ``(B, n_features)`` (vector)
        to logits ``(B, n_classes)``.
    """
    _check_name(name)
    n_classes = check_positive_int("n_classes", n_classes)
    n_features = check_positive_int("n_features", n_features)
    return _BUILDERS[name](n_classes=n_classes, n_features=n_features, **kwargs)
