"""Classical models: statistics, scikit-learn fit -> torch module equality, checkpoints."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.config import FeatureConfig
from soundclass.dsp.stats import feature_stats, stack_stats
from soundclass.errors import ParameterError
from soundclass.inference.predictor import predict_proba
from soundclass.models import create_model, model_spec
from soundclass.models.classical import FeatureStats, StatsSVM, is_classical
from soundclass.training.classical import fit_classical, fit_sklearn, to_module

# float32 module against float64 scikit-learn
PROBA_TOL = {"atol": 1e-5, "rtol": 1e-4}


def _toy(n_classes: int, *, n: int = 48, rows: int = 6, seed: int = 0):
    """Clips of different lengths whose rows drift with the class (separable, not trivially)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    feats = [
        rng.standard_normal((rows, int(rng.integers(12, 40)))) * (1 + 0.3 * c)
        + 0.8 * c * np.linspace(-1, 1, rows)[:, None]
        for c in labels
    ]
    return [f.astype(np.float32) for f in feats], labels


def _module_proba(model, feats) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [torch.softmax(model(torch.from_numpy(f)[None]), -1).numpy() for f in feats])


def test_feature_stats_known_values_and_torch_twin():
    S = np.array([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 4.0, 0.0]])
    got = feature_stats(S, stats=("mean", "std", "min", "max"))
    np.testing.assert_allclose(got, [3.0, 1.0, np.sqrt(3.5), np.sqrt(3.0), 1.0, 0.0, 6.0, 4.0])
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5, 17)).astype(np.float32)
    for stats in (("mean", "std"), ("max", "min", "mean")):
        twin = FeatureStats(stats)(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(twin, stack_stats(list(x), stats=stats), atol=1e-5, rtol=1e-5)
    with pytest.raises(ParameterError):
        feature_stats(S, stats=("median",))
    with pytest.raises(ParameterError):
        feature_stats(S[:, :0])
    with pytest.raises(ParameterError):
        stack_stats([S, S[:1]])


@pytest.mark.parametrize("name", ["mfcc-svm", "logmel-logreg", "aisfx-probe"])
@pytest.mark.parametrize("n_classes", [2, 4])
def test_module_equals_sklearn(name, n_classes):
    feats, labels = _toy(n_classes)
    fit = fit_sklearn(name, feats, labels, seed=0)
    model = to_module(fit)
    want = fit.predict_proba(feats)
    got = _module_proba(model, feats)
    np.testing.assert_allclose(got, want, **PROBA_TOL)
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    assert (got.argmax(1) == labels).mean() > 0.6  # it learnt something


def test_svm_decisions_equal_sklearn():
    feats, labels = _toy(3)
    fit = fit_sklearn("mfcc-svm", feats, labels)
    X = fit.scaler.transform(stack_stats(feats, stats=fit.stats))
    model = to_module(fit)
    with torch.no_grad():
        got = model.decision_function(torch.from_numpy(np.stack([f[:, :12] for f in feats])))
    Xc = fit.scaler.transform(stack_stats([f[:, :12] for f in feats], stats=fit.stats))
    np.testing.assert_allclose(got.numpy(), fit.estimator.decision_function(Xc), atol=1e-4, rtol=1e-4)
    # the SVM itself: its one-vs-one votes name the same class as scikit-learn's predict
    assert (fit.estimator.predict(X) == labels).mean() > 0.6


def test_absent_class_gets_no_probability():
    feats, labels = _toy(3)
    model = fit_classical("logmel-logreg", feats, labels, n_classes=4)
    proba = _module_proba(model, feats)
    assert proba.shape == (len(feats), 4)
    assert proba[:, 3].max() < 1e-9


def test_fit_is_deterministic_and_checks_inputs():
    feats, labels = _toy(3)
    a = fit_classical("mfcc-svm", feats, labels, seed=3).state_dict()
    b = fit_classical("mfcc-svm", feats, labels, seed=3).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ParameterError, match="unknown classical model"):
        fit_classical("cnn", feats, labels)
    with pytest.raises(ParameterError, match="two classes"):
        fit_classical("mfcc-svm", feats, np.zeros(len(feats), dtype=int))
    with pytest.raises(ParameterError, match="one entry per clip"):
        fit_classical("mfcc-svm", feats, labels[:-1])
    with pytest.raises(ParameterError, match="C="):
        fit_classical("mfcc-svm", feats, labels, C=0.0)


@pytest.mark.parametrize("name", ["mfcc-svm", "logmel-logreg"])
def test_checkpoint_round_trip_predicts_identically(name, tmp_path):
    spec = model_spec(name)
    assert is_classical(name)
    n_features = spec.feature.n_features
    rng = np.random.default_rng(5)
    feats, labels = _toy(3, rows=n_features)
    feats = [f + rng.standard_normal(f.shape[0]).astype(np.float32)[:, None] for f in feats]
    model = fit_classical(name, feats, labels, seed=0)
    out = save_checkpoint(tmp_path / "ckpt", model, model_name=name, model_kwargs=model.model_kwargs,
                          feature=spec.feature, classes=["a", "b", "c"], train_config={})
    ckpt = load_checkpoint(out)
    assert type(ckpt.model) is type(model)
    before = _module_proba(model, feats)
    after = predict_proba(ckpt, feats)
    np.testing.assert_allclose(after, before, atol=1e-6, rtol=0)
    rebuilt = create_model(name, n_classes=3, n_features=n_features, **model.model_kwargs)
    rebuilt.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(_module_proba(rebuilt.eval(), feats), before)


def test_svm_exports_to_onnx(tmp_path):
    feats, labels = _toy(3)
    model = fit_classical("mfcc-svm", feats, labels)
    x = torch.from_numpy(np.stack([f[:, :20] for f in feats[:4]]))
    path = tmp_path / "svm.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "B", 2: "T"}}, dynamo=False)
    session = onnxruntime.InferenceSession(str(path))
    got = session.run(None, {"x": x[:, :, :15].numpy()})[0]
    with torch.no_grad():
        want = model(x[:, :, :15]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


def test_unfitted_builds_are_distinct_per_seed():
    torch.manual_seed(0)
    a = create_model("mfcc-svm", n_classes=3, n_features=60, n_support=10)
    torch.manual_seed(1)
    b = create_model("mfcc-svm", n_classes=3, n_features=60, n_support=10)
    assert isinstance(a, StatsSVM) and not torch.equal(a.support_vectors, b.support_vectors)
    assert FeatureConfig(kind="mfcc", n_mfcc=20, deltas=2).n_features == model_spec("mfcc-svm").feature.n_features


@pytest.mark.parametrize("name", ["mfcc-svm", "logmel-logreg"])
def test_waveform_export_of_fitted_model(name, tmp_path):
    from soundclass.inference.export import export_model

    spec = model_spec(name)
    feats, labels = _toy(2, rows=spec.feature.n_features, n=12)
    model = fit_classical(name, feats, labels)
    path = export_model(model, spec.feature, ["a", "b"], tmp_path / f"{name}.onnx",
                        input_kind=spec.input, check=True)
    assert path.is_file()
