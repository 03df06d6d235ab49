"""models.ensemble: mean probabilities of members, registry/checkpoint round trip, ONNX."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.models import create_model, list_models, model_spec
from soundclass.models.ensemble import (
    ENSEMBLE_NAMES,
    Ensemble,
    build_ensemble,
    ensemble_kwargs,
    ensemble_name,
)


def _members(name: str, k: int, n_classes: int = 4) -> list[torch.nn.Module]:
    n_features = model_spec(name).feature.n_features
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(create_model(name, n_classes=n_classes, n_features=n_features).eval())
    return out


def _x(name: str, batch: int = 3, frames: int = 40) -> torch.Tensor:
    n_features = model_spec(name).feature.n_features
    gen = torch.Generator().manual_seed(7)
    if model_spec(name).input == "vector":
        return torch.rand(batch, n_features, generator=gen) * 10
    return torch.randn(batch, n_features, frames, generator=gen)


def test_registered_per_input_kind():
    assert set(ENSEMBLE_NAMES.values()) <= set(list_models())
    assert model_spec("ensemble").input == "sequence"
    assert model_spec("ensemble-vector").input == "vector"
    assert ensemble_name("cnn") == "ensemble" and ensemble_name("seed-cnn") == "ensemble-vector"


@pytest.mark.parametrize("name", ["cnn", "seed-cnn", "seed-lstm"])
def test_probabilities_are_the_mean_of_the_members(name):
    members = _members(name, 3)
    ens = Ensemble(members).eval()
    x = _x(name)
    with torch.no_grad():
        want = torch.stack([torch.softmax(m(x), dim=-1) for m in members]).mean(0)
        got = torch.softmax(ens(x), dim=-1)
        assert torch.allclose(torch.exp(ens(x)), want, atol=1e-6)  # logits are log mean p
    assert torch.allclose(got, want, atol=1e-6)
    # differs from any single member (a real average)
    assert not torch.allclose(got, torch.softmax(members[0](x), dim=-1), atol=1e-4)


def test_per_member_standardization():
    members = _members("seed-lstm", 2)
    n_features = model_spec("seed-lstm").feature.n_features
    gen = torch.Generator().manual_seed(1)
    mean = torch.randn(2, n_features, generator=gen)
    std = torch.rand(2, n_features, generator=gen) + 0.5
    ens = Ensemble(members, norm_mean=mean, norm_std=std).eval()
    x = _x("seed-lstm")
    with torch.no_grad():
        want = torch.stack([
            torch.softmax(m((x - mean[k][:, None]) / std[k][:, None]), dim=-1) for k, m in enumerate(members)
        ]).mean(0)
        assert torch.allclose(torch.softmax(ens(x), dim=-1), want, atol=1e-6)


def test_extreme_logits_stay_finite():
    class Const(torch.nn.Module):
        def __init__(self, v):
            super().__init__()
            self.v = torch.tensor(v)

        def forward(self, x):
            return self.v.expand(x.shape[0], -1)

    ens = Ensemble([Const([1000.0, -1000.0]), Const([-1000.0, 1000.0])])
    out = ens(torch.zeros(2, 3))
    assert torch.isfinite(out).all()
    assert torch.allclose(torch.softmax(out, -1), torch.full((2, 2), 0.5))


def test_checkpoint_round_trip(tmp_path):
    n_classes, name = 3, "seed-lstm"
    feature = model_spec(name).feature
    kwargs = ensemble_kwargs(name, n_members=2, standardize=True)
    torch.manual_seed(0)
    ens = create_model("ensemble", n_classes=n_classes, n_features=feature.n_features, **kwargs)
    with torch.no_grad():
        ens.norm_mean.normal_()
        ens.norm_std.uniform_(0.5, 2.0)
    ens.eval()
    save_checkpoint(tmp_path / "ck", ens, model_name="ensemble", model_kwargs=kwargs, feature=feature,
                    classes=["a", "b", "c"], train_config={})
    ck = load_checkpoint(tmp_path / "ck")
    assert ck.input == "sequence" and isinstance(ck.model, Ensemble)
    x = _x(name)
    with torch.no_grad():
        assert torch.allclose(ck.model(x), ens(x), atol=1e-6)


def test_build_errors():
    with pytest.raises(ParameterError, match="takes vector input"):
        build_ensemble(kind="sequence", n_classes=2, n_features=128, member="seed-cnn")
    with pytest.raises(ParameterError, match="unknown member"):
        build_ensemble(kind="sequence", n_classes=2, n_features=64, member="nope")
    with pytest.raises(ParameterError, match="ensembles"):
        build_ensemble(kind="sequence", n_classes=2, n_features=64, member="ensemble")
    with pytest.raises(ParameterError, match="n_members"):
        build_ensemble(kind="vector", n_classes=2, n_features=128, n_members=0)
    with pytest.raises(ParameterError, match="non-empty"):
        Ensemble([])
    with pytest.raises(ParameterError, match="shape"):
        Ensemble(_members("seed-cnn", 2), norm_mean=torch.zeros(3, 128), norm_std=torch.ones(3, 128))


@pytest.mark.parametrize("name", ["seed-cnn", "cnn"])
def test_exports_to_onnx_when_members_do(name, tmp_path):
    ens = Ensemble(_members(name, 2)).eval()
    x = _x(name, batch=2, frames=50)
    path = tmp_path / "ens.onnx"
    dynamic = {"x": {0: "batch"}} if model_spec(name).input == "vector" else {"x": {0: "batch", 2: "frames"}}
    torch.onnx.export(ens, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                      output_names=["logits"], dynamic_axes={**dynamic, "logits": {0: "batch"}})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x2 = _x(name, batch=3, frames=64)
    (out,) = session.run(None, {"x": x2.numpy()})
    with torch.no_grad():
        want = ens(x2).numpy()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_feature_config_of_specs_is_the_members():
    assert isinstance(model_spec("ensemble").feature, FeatureConfig)
    assert model_spec("ensemble-vector").feature == model_spec("seed-cnn").feature
