"""The training configuration: one frozen dataclass whose fields say everything about a setting.

Each :class:`TrainConfig` field carries a :class:`Setting` in its
``dataclasses.field(metadata=...)``: the value rule (type, range or choices,
the phrase of the error message), the help text, the trainer's fallback
default and the command-line spelling.  From that one place come

- the validation of :class:`TrainConfig` (``__post_init__``),
- :data:`DEFAULTS`, the lowest layer of the resolution order
  (``DEFAULTS < model_spec(name).train < user values``), which must name
  exactly the keys :data:`soundclass.models.registry.TRAIN_KEYS` lets a model
  spec default (checked at import),
- the flags of ``soundclass train`` (:func:`soundclass.cli._args.add_setting_flags`).

Adding a setting is one field here (plus its name in ``TRAIN_KEYS`` when a
model spec may default it: the registry sits below training and cannot
import this module).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from soundclass.config import FeatureConfig, config_from_dict, config_to_dict
from soundclass.data.fingerprint import DEFAULT_THRESHOLD
from soundclass.errors import ParameterError, is_int, is_number
from soundclass.models import list_models, model_spec
from soundclass.models.ensemble import ENSEMBLE_NAMES
from soundclass.models.panns import PANNS_MODELS
from soundclass.models.pretrained import check_pretrained_fit
from soundclass.models.registry import TRAIN_KEYS

__all__ = [
    "AUTO",
    "BALANCES",
    "DEFAULTS",
    "MONITORS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "RUNTIME_FIELDS",
    "Setting",
    "TrainConfig",
    "config_json",
    "feature_config",
    "resolve_config",
    "settings",
]

#: ``model`` value that chooses the model by cross-validation (:mod:`soundclass.training.auto`).
AUTO = "auto"
OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("onecycle", "cosine", "constant", "none")  # 'none' = 'constant' without warmup
BALANCES = ("weights", "sqrt", "sampler", "none")
MONITORS = ("macro_f1", "loss")

# Fields that only say how to run, not what is trained; a resumed run may change them.
RUNTIME_FIELDS = ("cache_dir", "n_jobs", "threads", "device", "epochs", "patience")

# Entries written next to the TrainConfig fields in config.json / model.json.
_DERIVED_KEYS = ("feature_config", "pretrained_from")

_UNSET = object()


@dataclass(frozen=True)
class Setting:
    """What one :class:`TrainConfig` field accepts, means and is called on the command line.

    Parameters
    ----------
    help : str
        One line for ``--help`` and the docs.
    kind : {int, float, str, bool, dict}
        The value type; the command line parses a flag's text with it
        (``dict``: repeated ``KEY=VALUE``).
    ok : callable
        ``ok(value) -> bool`` for a non-``None`` value.
    must : str
        Completes ``"{name}={value!r} must be ..."`` when ``ok`` fails.
    choices : tuple of str, optional
        The allowed values (``ok`` and ``must`` follow from them).
    default : object
        The trainer's fallback when neither the user nor the model spec sets
        the field (only for the keys of :data:`DEFAULTS`).
    flag : str, optional
        Command-line flag (default ``--`` + the name in kebab-case).
    metavar : str, optional
    off : (str, object, str), optional
        An extra flag setting a "disabled" value, with its help: ``('--no-mixup', 0.0, 'disable mixup')``.
    const : object, optional
        Value of the flag given without an argument (``nargs='?'``).
    choices_from : callable, optional
        Choices known only at run time (the model registry), for the command line.
    """

    help: str
    kind: type
    ok: Callable[[Any], bool] = lambda v: True
    must: str = ""
    choices: tuple[str, ...] | None = None
    default: Any = _UNSET
    flag: str | None = None
    metavar: str | None = None
    off: tuple[str, Any, str] | None = None
    const: Any = None
    choices_from: Callable[[], Any] | None = None

    @property
    def has_default(self) -> bool:
        return self.default is not _UNSET


def _positive_int(help: str, **kw: Any) -> dict[str, Setting]:
    return {"setting": Setting(help, int, lambda v: is_int(v) and v > 0, "a positive integer", **kw)}


def _number(help: str, must: str, ok: Callable[[float], bool], **kw: Any) -> dict[str, Setting]:
    return {"setting": Setting(help, float, lambda v: is_number(v) and bool(ok(v)), must, **kw)}


def _unit(help: str, must: str = "in [0, 1)", **kw: Any) -> dict[str, Setting]:
    return _number(help, must, lambda v: 0 <= v < 1, **kw)


def _choice(help: str, choices: tuple[str, ...], **kw: Any) -> dict[str, Setting]:
    return {"setting": Setting(help, str, lambda v: v in choices, f"one of {choices}", choices=choices, **kw)}


def _text(help: str, must: str, ok: Callable[[Any], bool] = lambda v: isinstance(v, str) and v != "",
          **kw: Any) -> dict[str, Setting]:
    return {"setting": Setting(help, str, ok, must, **kw)}


def _mapping(help: str, **kw: Any) -> dict[str, Setting]:
    def ok(v: Any) -> bool:
        return isinstance(v, Mapping) and all(isinstance(k, str) for k in v)

    return {"setting": Setting(help, dict, ok, "a mapping with string keys", metavar="KEY=VALUE", **kw)}


def _val_size_ok(v: Any) -> bool:
    return is_number(v) and (0 <= v < 1 or (v >= 1 and float(v).is_integer()))


def _registered_models() -> list[str]:
    """Models ``train`` can train: every registered one but the ensembles (``--folds`` builds those)."""
    return [AUTO, *(m for m in list_models() if m not in ENSEMBLE_NAMES.values())]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; ``None`` means "the model's default".

    Every field's rule, help and flag is its :class:`Setting` (``settings()``);
    in short:

    Parameters
    ----------
    model : str
        Registry name (``soundclass.models.list_models()``), or ``'auto'``
        (the default): :func:`soundclass.training.auto.train_auto` scores
        ``auto_candidates`` by grouped ``auto_folds``-fold cross-validation on
        the training part within ``time_budget`` seconds and trains the best.
    model_kwargs : dict
        Extra architecture arguments for ``create_model``.
    epochs, batch_size : int or None
    lr, weight_decay : float or None
        Peak learning rate and decoupled weight decay.
    optimizer : {'adamw', 'adam', 'sgd'} or None
    scheduler : {'onecycle', 'cosine', 'constant', 'none'} or None
        Stepped per batch. ``'cosine'``: linear warmup then cosine decay to 0;
        ``'onecycle'``: ``torch.optim.lr_scheduler.OneCycleLR`` with
        ``pct_start=warmup``; ``'constant'``: linear warmup then constant;
        ``'none'``: constant, no warmup.
    warmup : float or None
        Fraction of all steps spent warming up, in [0, 1).
    patience : int or None
        Early stopping after this many epochs without improvement of
        ``monitor``; 0 disables it.
    monitor : {'macro_f1', 'loss'} or None
        Validation quantity that selects the best checkpoint.
    seed : int
        Seeds every random draw (init, order, crops, augmentation, split).
    clip_seconds : float or None
        Training window of sequence models; ``None``: the model spec's value,
        else the ``clip_percentile`` of the training clips' durations, at most
        twice their median, clamped to [0.5 s, 10 s] (longer clips are
        randomly cropped; :func:`~soundclass.training.data.clip_seconds_from_data`).
    clip_percentile : float or None
        Percentile of the durations that gives ``clip_seconds`` when that is
        unset, in [0, 100]; ``None``: 90.
    bucket : bool or None
        Length-bucketed batches, each cropped/padded to its own longest clip
        (at most ``clip_seconds``); ``False`` pads every batch to
        ``clip_seconds``.  ``None``: decided from the data by
        :func:`~soundclass.training.fit` (on when padding every clip to
        ``clip_seconds`` would make more than a third of the input padding).
    mixup_alpha : float or None
        Beta(alpha, alpha) mixup; 0 disables.
    spec_augment : bool or None
        Time/frequency masking of training windows.
    freq_warp : float or None
        Maximum relative random warp of the frequency axis of each training
        window (:func:`soundclass.dsp.augment.freq_warp`), in [0, 1); 0 disables.
    time_stretch : float or None
        Maximum relative random time stretch of each training window
        (:func:`soundclass.dsp.augment.time_stretch`), in [0, 1); 0 disables.
    label_smoothing : float or None
        In [0, 1).
    balance : {'weights', 'sqrt', 'sampler', 'none'} or None
        Class-weighted loss (scikit-learn's "balanced" weights, or their
        square roots), a ``WeightedRandomSampler``, or nothing.
    val_size : float
        Validation fraction in [0, 1), or a whole number of clips >= 1; 0
        trains on everything (the last epoch is the checkpoint).
    group_pattern : str or None
        Regex giving each file's group (``dataset.assign_groups``).
    folds : int
        ``K >= 2``: train ``K`` models on grouped stratified folds of the
        training part, write their out-of-fold predictions (``oof.csv``) and
        save their mean-probability ensemble as the checkpoint
        (:func:`soundclass.training.kfold.train_folds`); the ``val_size``
        part is still held out first and scored by the ensemble (with
        ``val_size=0`` the out-of-fold predictions are the evaluation).
        0 or 1: one model, no folds.
    near_duplicates : float
        Fingerprint similarity at which two clips are near duplicates and
        tied into one split group (:mod:`soundclass.training.grouping`); 0
        turns detection off.  Byte-identical clips are always tied.
    unknown_precision : float or None
        Target precision of the "unknown" threshold chosen on the validation
        split (:mod:`soundclass.training.calibrate`).
    feature : dict
        Overrides of the model's FeatureConfig fields, e.g. ``{'n_mels': 64}``.
    grad_clip : float or None
        Max gradient norm; ``None`` disables clipping.
    cache_dir : str or None
        Feature cache folder (``None``: no disk cache, features held in
        memory); with it, training reads the features from the cache batch by
        batch (:class:`~soundclass.extraction.stored.StoredFeatures`).
    n_jobs : int or None
        Feature extraction workers.
    threads : int or None
        ``torch.set_num_threads`` for training.
    device : str or None
        ``'cpu'``, ``'cuda'``, ...; ``None``: CUDA when available.
    pretrained : str or None
        A PANNs checkpoint file (``.pth``, e.g. ``Cnn14_mAP=0.431.pth``) whose
        backbone initialises the model right after it is built (models
        :data:`soundclass.training.pretrained.PRETRAINED_MODELS` only, with the
        64-band log-mel input); read with ``torch.load(weights_only=True)``.
        The run's checkpoints hold every weight afterwards, so they never need
        this file again.
    auto_candidates : str or None
        ``model='auto'``: comma-separated candidates (``None``:
        :data:`soundclass.training.auto.DEFAULT_CANDIDATES`).
    auto_folds : int
        ``model='auto'``: cross-validation folds (>= 2).
    time_budget : float
        ``model='auto'``: seconds for choosing and the final fit (see :mod:`soundclass.training.auto`).
    """

    model: str = field(default=AUTO, metadata=_text(
        "registered model, or 'auto' (the default): score the --auto-candidates by grouped k-fold "
        "cross-validation on the training part within --time-budget and train the best",
        "a registered model name or 'auto'", choices_from=_registered_models))
    model_kwargs: Mapping[str, Any] = field(default_factory=dict, metadata=_mapping(
        "architecture argument of create_model, e.g. dropout=0.3 (VALUE read as JSON; repeatable)",
        flag="--model-kwarg"))
    epochs: int | None = field(default=None, metadata=_positive_int("training epochs", default=30))
    batch_size: int | None = field(default=None, metadata=_positive_int("clips per batch", default=32))
    lr: float | None = field(default=None, metadata=_number(
        "learning rate", "a positive number", lambda v: v > 0 and math.isfinite(v), default=1e-3))
    weight_decay: float | None = field(default=None, metadata=_number(
        "decoupled weight decay", "a non-negative number", lambda v: v >= 0, default=1e-2))
    optimizer: str | None = field(default=None, metadata=_choice("optimizer", OPTIMIZERS, default="adamw"))
    scheduler: str | None = field(default=None, metadata=_choice(
        "per-batch learning-rate schedule ('none': constant without warmup)", SCHEDULERS, default="onecycle"))
    warmup: float | None = field(default=None, metadata=_unit(
        "fraction of all steps spent warming up, in [0, 1)", default=0.1))
    patience: int | None = field(default=None, metadata={"setting": Setting(
        "stop after this many epochs without improvement (0: never stop early)", int,
        lambda v: is_int(v) and v >= 0, "a non-negative integer (0 disables)", default=10)})
    monitor: str | None = field(default=None, metadata=_choice(
        "validation quantity that selects the best checkpoint", MONITORS, default="macro_f1"))
    seed: int = field(default=0, metadata={"setting": Setting(
        "seed of every random draw (init, order, crops, augmentation, split)", int,
        lambda v: is_int(v) and v >= 0, "a non-negative integer")})
    clip_seconds: float | None = field(default=None, metadata=_number(
        "training crop length in seconds", "a positive number or None", lambda v: v > 0))
    clip_percentile: float | None = field(default=None, metadata=_number(
        "percentile of the training clips' durations giving the crop length when --clip-seconds is "
        "not set, at most twice the median (default 90; longer clips are randomly cropped)", "in [0, 100] or None",
        lambda v: 0 <= v <= 100))
    bucket: bool | None = field(default=None, metadata={"setting": Setting(
        "length-bucketed batches, each cropped/padded to its own longest clip (default: on when "
        "padding every clip to the crop length would be over a third of the input); "
        "--no-bucket pads every batch to the crop length", bool,
        lambda v: isinstance(v, bool), "True or False")})
    mixup_alpha: float | None = field(default=None, metadata=_number(
        "mixup Beta(alpha, alpha)", "a non-negative number", lambda v: v >= 0, default=0.0,
        off=("--no-mixup", 0.0, "disable mixup")))
    spec_augment: bool | None = field(default=None, metadata={"setting": Setting(
        "SpecAugment time/frequency masking of training windows", bool,
        lambda v: isinstance(v, bool), "True or False", default=False)})
    freq_warp: float | None = field(default=None, metadata=_unit(
        "maximum relative random warp of the frequency axis, in [0, 1) (0 disables)",
        "in [0, 1) (0 disables)", default=0.0))
    time_stretch: float | None = field(default=None, metadata=_unit(
        "maximum relative random time stretch, in [0, 1) (0 disables)", "in [0, 1) (0 disables)",
        default=0.0))
    label_smoothing: float | None = field(default=None, metadata=_unit(
        "label smoothing, in [0, 1)", default=0.0))
    balance: str | None = field(default=None, metadata=_choice(
        "imbalanced classes: 'sampler' (default when given without a value) draws classes evenly, "
        "'weights' weights the loss by inverse class frequency (the trainer's default), 'sqrt' by its "
        "square root (milder for very imbalanced data), 'none' does nothing",
        BALANCES, default="weights", const="sampler"))
    val_size: float = field(default=0.2, metadata={"setting": Setting(
        "validation fraction in [0, 1), or a whole number of clips (default 0.2; 0 trains on everything)",
        float, _val_size_ok, "a fraction in [0, 1) or a whole number of clips >= 1")})
    group_pattern: str | None = field(default=None, metadata=_text(
        r"regex on file names giving each clip's group (speaker, recording), kept on one side of "
        r"the split, e.g. '^\d+_(?P<group>[a-z]+)_'", "a regex or None", metavar="REGEX"))
    folds: int = field(default=0, metadata={"setting": Setting(
        "train K models on grouped folds, write out-of-fold predictions (oof.csv) and save their "
        "probability-averaging ensemble as the checkpoint; --val-size is still held out first and "
        "scored by the ensemble (--val-size 0: the out-of-fold predictions are the evaluation). "
        "0 or 1: one model", int, lambda v: is_int(v) and v >= 0, "a non-negative integer (0/1: no folds)",
        metavar="K")})
    near_duplicates: float = field(default=DEFAULT_THRESHOLD, metadata=_number(
        "tie near duplicates (re-encoded, trimmed, resampled or gain-changed copies) into one split "
        f"group at this fingerprint similarity (default {DEFAULT_THRESHOLD}; exact copies are always tied)",
        "in [0, 1] (0 turns near-duplicate detection off)", lambda v: 0 <= v <= 1, metavar="SCORE",
        off=("--no-near-duplicates", 0.0, "do not look for near duplicates (exact copies are still tied)")))
    unknown_precision: float | None = field(default=None, metadata=_number(
        "choose on the validation split the lowest calibrated top-probability threshold at which the "
        "accepted answers reach this precision; predict then answers 'unknown' below it",
        "in (0, 1] or None", lambda v: 0 < v <= 1, metavar="Q"))
    feature: Mapping[str, Any] = field(default_factory=dict, metadata=_mapping(
        "override of the model's FeatureConfig, e.g. n_mels=64 (VALUE read as JSON; repeatable)"))
    grad_clip: float | None = field(default=None, metadata=_number(
        "clip the gradient norm to this value (default: no clipping)", "a positive number or None",
        lambda v: v > 0))
    cache_dir: str | None = field(default=None, metadata=_text(
        "feature cache folder, reused across runs; training streams the features from it batch by "
        "batch (default: no cache, features held in memory)", "a folder path or None",
        lambda v: isinstance(v, (str, os.PathLike)), flag="--cache-dir", metavar="DIR"))
    n_jobs: int | None = field(default=None, metadata={"setting": Setting(
        "parallel feature-extraction workers (default: all cores)", int, lambda v: is_int(v) and v != 0,
        "a non-zero integer or None", flag="--jobs", metavar="N")})
    threads: int | None = field(default=None, metadata=_positive_int("torch threads"))
    device: str | None = field(default=None, metadata=_text(
        "torch device, e.g. cpu or cuda:0 (default: CUDA when available)", "a torch device name or None",
        lambda v: isinstance(v, str)))
    pretrained: str | None = field(default=None, metadata=_text(
        "initialise the backbone from a downloaded PANNs checkpoint (e.g. Cnn14_mAP=0.431.pth) and "
        f"fine-tune; only for --model {', '.join(PANNS_MODELS)} with their 64-band log-mel input. The "
        "file is read with torch.load(weights_only=True) (tensors only, never code); its front end "
        "and AudioSet head are dropped and the classifier head is new. The run's checkpoint holds "
        "every weight, so it never needs the file again", "a checkpoint file path or None", metavar="PATH"))

    auto_candidates: str | None = field(default=None, metadata=_text(
        "--model auto: comma-separated candidate models (default: aisfx-probe, logmel-logreg, "
        "mfcc-svm, cnn, aisfx; scored cheapest first)", "a comma-separated list of model names or None",
        metavar="M1,M2,..."))
    auto_folds: int = field(default=3, metadata={"setting": Setting(
        "--model auto: grouped cross-validation folds of the training part", int,
        lambda v: is_int(v) and v >= 2, "an integer >= 2", metavar="K")})
    time_budget: float = field(default=600.0, metadata=_number(
        "--model auto: seconds for the candidates' features and folds and the final fit of the "
        "chosen one; candidates that cannot win are dropped early, expensive ones get fewer folds or "
        "are skipped (every decision in the leaderboard)", "a positive number",
        lambda v: v > 0 and math.isfinite(v), metavar="SECONDS"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_kwargs", dict(self.model_kwargs or {}))
        if isinstance(self.pretrained, os.PathLike):
            object.__setattr__(self, "pretrained", os.fspath(self.pretrained))
        object.__setattr__(self, "feature", dict(self.feature or {}))
        _validate(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """From a dict (e.g. ``config.json`` or a checkpoint's ``train_config``), rejecting unknown keys.

        The derived ``feature_config`` and ``pretrained_from`` entries written
        next to the fields are ignored.
        """
        data = {k: v for k, v in data.items() if k not in _DERIVED_KEYS}
        return config_from_dict(cls, data)


def settings() -> dict[str, Setting]:
    """Every :class:`TrainConfig` field's :class:`Setting`, in field order."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(TrainConfig)}


def _validate(c: TrainConfig) -> None:
    for name, setting in settings().items():
        value = getattr(c, name)
        if value is not None and not setting.ok(value):
            raise ParameterError(f"{name}={value!r} must be {setting.must}")
    if c.model is None:
        raise ParameterError("model=None must be a registered model name")
    if c.val_size is None:
        raise ParameterError("val_size=None must be a number in [0, 1)")


# The lowest layer of the resolution order; a model spec's ``train`` dict and
# then the user's non-None values override these.
DEFAULTS: dict[str, Any] = {name: s.default for name, s in settings().items() if s.has_default}
# Not derived: the registry sits below training and cannot read this table, so both are checked equal.
if set(DEFAULTS) != set(TRAIN_KEYS):  # pragma: no cover - a programming error, caught by any test
    raise ImportError(f"TrainConfig settings with a default {sorted(DEFAULTS)} must be "
                      f"soundclass.models.registry.TRAIN_KEYS {sorted(TRAIN_KEYS)}")


def resolve_config(config: TrainConfig | None = None, **overrides: Any) -> TrainConfig:
    """Fill every ``None`` training field: :data:`DEFAULTS` < model spec < user.

    Parameters
    ----------
    config : TrainConfig, optional
        The user's config (default: ``TrainConfig()``).
    **overrides
        Field changes applied on top of ``config`` first.

    Returns
    -------
    TrainConfig
        Validated, with no ``None`` left among the keys of :data:`DEFAULTS`.
        ``clip_seconds`` stays ``None`` when neither the user nor the spec
        sets it, and ``bucket`` when the user does not (:func:`~soundclass.training.fit`
        decides both from the data).

    Raises
    ------
    ParameterError
        Unknown model, a spec default of the wrong kind, an invalid value, or
        ``pretrained`` with a model or feature it cannot initialise
        (:func:`~soundclass.models.pretrained.check_pretrained_fit`).
    """
    config = config or TrainConfig()
    if overrides:
        config = config.replace(**overrides)
    spec = model_spec(config.model)
    filled = {}
    for key, default in DEFAULTS.items():
        user = getattr(config, key)
        filled[key] = user if user is not None else spec.train.get(key, default)
    if config.clip_seconds is None and spec.clip_seconds is not None:
        filled["clip_seconds"] = float(spec.clip_seconds)
    resolved = config.replace(**filled)
    feature = feature_config(resolved)  # validates the feature overrides
    check_pretrained_fit(resolved.model, feature, pretrained=resolved.pretrained)
    return resolved


def feature_config(config: TrainConfig) -> FeatureConfig:
    """The model spec's :class:`FeatureConfig` with ``config.feature`` overrides applied."""
    spec = model_spec(config.model)
    names = {f.name for f in dataclasses.fields(FeatureConfig)}
    unknown = sorted(set(config.feature) - names)
    if unknown:
        raise ParameterError(f"unknown feature override(s) {unknown}; choose from {sorted(names)}")
    if "pooling" in config.feature and config.feature["pooling"] != spec.feature.pooling:
        raise ParameterError(
            f"feature pooling={config.feature['pooling']!r} does not fit model {config.model!r} "
            f"({spec.input} input needs pooling={spec.feature.pooling!r})"
        )
    return spec.feature.replace(**config.feature)


def config_json(config: TrainConfig) -> dict[str, Any]:
    """The config as written to ``config.json``: its fields plus the resolved ``feature_config``."""
    out = config_to_dict(config)
    out["feature_config"] = config_to_dict(feature_config(config))
    return out
