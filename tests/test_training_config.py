"""TrainConfig: one Setting per field gives validation, DEFAULTS and the resolution order."""

from __future__ import annotations

import dataclasses

import pytest

from _training_models import SEQ, VEC, registered
from soundclass.errors import ParameterError
from soundclass.models.registry import TRAIN_KEYS
from soundclass.training import DEFAULTS, TrainConfig, feature_config, resolve_config, settings


@pytest.fixture(scope="module", autouse=True)
def tiny_models():
    with registered():
        yield


def test_resolution_order():
    cfg = resolve_config(TrainConfig(model=VEC))
    assert cfg.epochs == 6 and cfg.lr == 3e-2 and cfg.optimizer == "adam"  # spec
    assert cfg.weight_decay == DEFAULTS["weight_decay"] and cfg.balance == DEFAULTS["balance"]  # defaults
    cfg = resolve_config(TrainConfig(model=VEC, epochs=2, weight_decay=0.5))
    assert cfg.epochs == 2 and cfg.weight_decay == 0.5 and cfg.lr == 3e-2  # user wins
    assert all(getattr(cfg, k) is not None for k in DEFAULTS)
    assert resolve_config(cfg) == cfg  # idempotent


@pytest.mark.parametrize(("field", "value", "match"), [
    ("epochs", 0, "epochs=0"), ("lr", -1.0, "lr=-1.0"), ("scheduler", "step", "scheduler='step'"),
    ("balance", "oversample", "balance="), ("val_size", 1.5, "val_size=1.5"), ("val_size", -0.1, "val_size"),
    ("label_smoothing", 1.0, "label_smoothing"), ("batch_size", 2.5, "batch_size"),
    ("patience", -1, "patience"), ("spec_augment", "yes", "spec_augment"),
    ("freq_warp", 1.0, "freq_warp=1.0"), ("freq_warp", -0.1, "freq_warp"), ("time_stretch", True, "time_stretch"),
])
def test_invalid_values_raise(field, value, match):
    with pytest.raises(ParameterError, match=match):
        TrainConfig(model=VEC, **{field: value})


def test_unknown_model_and_feature_override():
    with pytest.raises(ParameterError, match="no-such"):
        resolve_config(TrainConfig(model="no-such"))
    with pytest.raises(ParameterError, match="n_melz"):
        resolve_config(TrainConfig(model=VEC, feature={"n_melz": 4}))
    with pytest.raises(ParameterError, match="pooling"):
        resolve_config(TrainConfig(model=SEQ, feature={"pooling": "mean"}))
    assert feature_config(TrainConfig(model=SEQ, feature={"n_mels": 4})).n_mels == 4
    with pytest.raises(ParameterError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"model": VEC, "epoch": 3})




def test_every_field_has_a_setting_and_defaults_are_the_model_tunable_keys():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    table = settings()
    assert list(table) == names
    assert all(s.help and s.kind in (int, float, str, bool, dict) for s in table.values())
    assert set(DEFAULTS) == set(TRAIN_KEYS)
    for name, value in DEFAULTS.items():  # every fallback passes its own rule
        assert table[name].ok(value), name
        TrainConfig(**{name: value})


@pytest.mark.parametrize("name", [n for n, s in settings().items() if s.choices])
def test_choice_settings_accept_each_choice_and_nothing_else(name):
    for choice in settings()[name].choices:
        assert getattr(TrainConfig(**{name: choice}), name) == choice
    with pytest.raises(ParameterError, match=f"{name}='nope' must be one of"):
        TrainConfig(**{name: "nope"})


def test_patience_zero_disables_and_none_fields():
    assert TrainConfig(patience=0).patience == 0
    with pytest.raises(ParameterError, match="model=None"):
        TrainConfig(model=None)
    with pytest.raises(ParameterError, match="val_size=None"):
        TrainConfig(val_size=None)
    with pytest.raises(ParameterError, match="model_kwargs"):
        TrainConfig(model_kwargs={1: 2})
