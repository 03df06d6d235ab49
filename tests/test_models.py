"""Models: the registry, every registered model (timm-style), seed and PANNs layouts."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from helpers import assert_batch_consistent, builtin_models, restored_model_registry
from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.models import create_model, list_models, model_spec, register_model
from soundclass.models import registry as registry_module
from soundclass.models.panns import PannsCNN
from soundclass.models.registry import ModelSpec

# The models soundclass registers, not test models other modules may have registered.
ALL_MODELS = builtin_models()
# cnn14 has 80 M parameters: its heavy checks are marked slow
HEAVY = {"cnn14"}
ALL_MODELS_MARKED = [
    pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ALL_MODELS
]
N_CLASSES = 5


def _inputs(name: str, batch: int, n_frames: int, *, seed: int = 0) -> torch.Tensor:
    spec = model_spec(name)
    gen = torch.Generator().manual_seed(seed)
    n_features = spec.feature.n_features
    if spec.input == "vector":
        return torch.rand(batch, n_features, generator=gen) * 10.0
    return torch.randn(batch, n_features, n_frames, generator=gen)


def _build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(name, n_classes=N_CLASSES, n_features=model_spec(name).feature.n_features)


def test_expected_models_registered():
    assert {"seed-cnn", "seed-lstm", "cnn6", "cnn10", "cnn14", "cnn"} <= set(ALL_MODELS)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_spec_is_consistent(name):
    spec = model_spec(name)
    assert isinstance(spec.feature, FeatureConfig)
    assert spec.input in ("sequence", "vector")
    assert (spec.feature.pooling == "mean") == (spec.input == "vector")
    assert set(spec.train) <= set(registry_module.TRAIN_KEYS)
    assert spec.description


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("n_frames", [5, 37, 100])
def test_forward_shape_no_nan(name, n_frames):
    model = _build(name).eval()
    x = _inputs(name, 3, n_frames)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (3, N_CLASSES)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ALL_MODELS_MARKED)
def test_every_parameter_gets_gradient(name):
    model = _build(name).train()
    x = _inputs(name, 4, 40)
    y = torch.arange(4) % N_CLASSES
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ALL_MODELS)
def test_eval_batch_equals_stacked_singles(name):
    model = _build(name).eval()
    x = _inputs(name, 3, 48, seed=1)
    with torch.no_grad():
        assert_batch_consistent(model, x, atol=1e-5, rtol=1e-4, keepdim=True)


@pytest.mark.parametrize("name", ALL_MODELS_MARKED)
def test_safetensors_round_trip(name, tmp_path):
    model = _build(name, seed=0).eval()
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    other = _build(name, seed=1).eval()
    x = _inputs(name, 2, 40)
    with torch.no_grad():
        assert not torch.allclose(model(x), other(x))
        other.load_state_dict(load_file(str(path)))
        torch.testing.assert_close(model(x), other(x), atol=0, rtol=0)


def test_sequence_models_take_variable_length():
    for name in ALL_MODELS:
        if model_spec(name).input != "sequence":
            continue
        model = _build(name).eval()
        with torch.no_grad():
            short = model(_inputs(name, 2, 20))
            long = model(_inputs(name, 2, 153))
        assert short.shape == long.shape == (2, N_CLASSES)


def test_seed_cnn_matches_keras_layers():
    n_classes = 20
    model = create_model("seed-cnn", n_classes=n_classes, n_features=128)
    counts = {
        name: sum(p.numel() for p in mod.parameters())
        for name, mod in model.named_children()
        if any(True for _ in mod.parameters())
    }
    assert set(counts) == {"conv1", "conv2", "dense", "out"}
    assert counts["conv1"] == 640  # 3*3*1*64 + 64
    assert counts["conv2"] == 73856  # 3*3*64*128 + 128
    assert counts["dense"] == 1049600  # 1024*1024 + 1024
    assert counts["out"] == 1025 * n_classes
    # Keras init: zero biases, glorot-uniform bound sqrt(6 / (fan_in + fan_out))
    assert all(torch.count_nonzero(getattr(model, n).bias) == 0 for n in counts)
    bound = (6.0 / (1024 + 1024)) ** 0.5
    assert model.dense.weight.abs().max() <= bound
    assert model.dense.weight.abs().max() > 0.9 * bound


def test_seed_cnn_reshape_is_row_major():
    model = create_model("seed-cnn", n_classes=3, n_features=128).eval()
    seen = {}
    model.conv1.register_forward_hook(lambda m, inp, out: seen.__setitem__("x", inp[0]))
    x = torch.arange(256, dtype=torch.float32).reshape(2, 128)
    with torch.no_grad():
        model(x)
    image = seen["x"]
    assert image.shape == (2, 1, 16, 8)
    assert image[0, 0, 0, 7] == 7 and image[0, 0, 1, 0] == 8 and image[1, 0, 15, 7] == 255


def test_seed_cnn_rejects_wrong_sizes():
    with pytest.raises(ParameterError, match="n_features=100"):
        create_model("seed-cnn", n_classes=3, n_features=100)
    model = create_model("seed-cnn", n_classes=3, n_features=128)
    with pytest.raises(ParameterError, match=r"\(B, n_features\)"):
        model(torch.zeros(2, 128, 10))


def test_seed_lstm_forget_bias_and_mean_over_frames():
    model = create_model("seed-lstm", n_classes=4, n_features=60).eval()
    h = model.lstm.hidden_size
    assert torch.all(model.lstm.bias_ih_l0[h : 2 * h] == 1)
    assert torch.count_nonzero(model.lstm.bias_hh_l0) == 0
    # frame scores averaged: the clip logits equal the mean of the per-frame head
    x = torch.randn(2, 60, 30)
    with torch.no_grad():
        frames, _ = model.lstm(x.transpose(1, 2))
        expected = model.fc2(torch.relu(model.fc1(frames))).mean(dim=1)
        torch.testing.assert_close(model(x), expected)


def _panns_backbone_keys(channels, n_convs):
    """The PANNs checkpoint key layout, written out independently of our class."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = {f"bn0.{k}" for k in bn}
    for i in range(1, len(channels) + 1):
        for j in range(1, n_convs + 1):
            keys.add(f"conv_block{i}.conv{j}.weight")
            keys |= {f"conv_block{i}.bn{j}.{k}" for k in bn}
    return keys | {"fc1.weight", "fc1.bias"}


@pytest.mark.parametrize(
    "name, channels, n_convs, kernel, n_params_audioset",
    [
        ("cnn6", (64, 128, 256, 512), 1, 5, 4_837_455),
        ("cnn10", (64, 128, 256, 512), 2, 3, 5_219_279),
        ("cnn14", (64, 128, 256, 512, 1024, 2048), 2, 3, 80_753_615),
    ],
)
def test_panns_layout(name, channels, n_convs, kernel, n_params_audioset):
    model = create_model(name, n_classes=527, n_features=64)
    state = model.state_dict()
    assert set(state) == _panns_backbone_keys(channels, n_convs) | {"fc.weight", "fc.bias"}
    assert state["conv_block1.conv1.weight"].shape == (channels[0], 1, kernel, kernel)
    assert state["fc1.weight"].shape == (channels[-1], channels[-1])
    # with the 527-class AudioSet head the count equals the published model's
    assert sum(p.numel() for p in model.parameters()) == n_params_audioset


def test_panns_spec_feature_is_panns_front_end():
    feature = model_spec("cnn14").feature
    assert (feature.kind, feature.sr, feature.n_fft, feature.hop_length) == ("logmel", 32000, 1024, 320)
    assert (feature.n_mels, feature.fmin, feature.fmax, feature.top_db) == (64, 50.0, 14000.0, None)


def test_panns_bn0_normalises_each_mel_bin():
    model = PannsCNN(n_classes=2, n_features=8, channels=(4, 4), fc_width=4).eval()
    with torch.no_grad():
        model.bn0.running_mean.copy_(torch.arange(8.0))
        model.bn0.running_var.fill_(1.0)
    x = torch.arange(8.0).view(1, 8, 1).expand(2, 8, 12).clone()  # each bin at its mean
    seen = {}
    model.conv_block1.register_forward_hook(lambda m, inp, out: seen.__setitem__("x", inp[0]))
    with torch.no_grad():
        model(x)
    assert seen["x"].shape == (2, 1, 12, 8)  # (B, 1, T, n_mels)
    torch.testing.assert_close(seen["x"], torch.zeros(2, 1, 12, 8), atol=1e-3, rtol=0)


def test_panns_rejects_bad_configs():
    with pytest.raises(ParameterError, match="n_features=8"):
        create_model("cnn10", n_classes=3, n_features=8)
    with pytest.raises(ParameterError, match="pools"):
        PannsCNN(n_classes=3, channels=(8, 8), pools=((2, 2),))
    with pytest.raises(ParameterError, match="n_convs"):
        PannsCNN(n_classes=3, channels=(8, 8), n_convs=3)


def test_unknown_model_lists_choices():
    with pytest.raises(ParameterError, match="unknown model 'nope'.*seed-cnn"):
        create_model("nope", n_classes=3, n_features=64)
    with pytest.raises(ParameterError, match="cnn14"):
        model_spec("nope")


def test_create_model_validates_sizes():
    with pytest.raises(ParameterError, match="n_classes=0"):
        create_model("cnn", n_classes=0, n_features=64)


def test_register_variant_in_one_line():
    spec = model_spec("cnn")
    name = "test-cnn-tiny"
    register_model(name, spec=spec)(lambda **kw: PannsCNN(channels=(8, 16), **kw))
    model = create_model(name, n_classes=3, n_features=64).eval()
    assert model.conv_block2.conv1.out_channels == 16
    assert model(torch.randn(1, 64, 20)).shape == (1, 3)
    with pytest.raises(ParameterError, match="already registered"):
        register_model(name, spec=spec)(PannsCNN)
    # no clean-up here: the autouse model_registry fixture (conftest) removes it


def test_registrations_do_not_outlive_their_test():
    assert "test-cnn-tiny" not in list_models()  # registered by the test above
    before = list_models()
    with restored_model_registry():
        register_model("test-scoped", spec=model_spec("cnn"))(PannsCNN)
        assert "test-scoped" in list_models()
    assert list_models() == before


def test_model_spec_validation():
    seq = FeatureConfig(kind="logmel")
    with pytest.raises(ParameterError, match="input"):
        ModelSpec(feature=seq, input="image")
    with pytest.raises(ParameterError, match="pooling='mean'"):
        ModelSpec(feature=seq, input="vector")
    with pytest.raises(ParameterError, match="clip_seconds"):
        ModelSpec(feature=seq, clip_seconds=0.0)
    with pytest.raises(ParameterError, match="lr_typo"):
        ModelSpec(feature=seq, train={"lr_typo": 1.0})
    train = {"lr": 1e-3}
    spec = ModelSpec(feature=seq, train=train)
    train["lr"] = 5.0  # the spec keeps its own copy
    assert spec.train["lr"] == 1e-3


def test_level_norm_makes_output_gain_invariant():
    x = torch.randn(2, 16, 20, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    model = PannsCNN(n_classes=3, n_features=16, channels=(8, 8), level_norm=True).eval()
    plain = PannsCNN(n_classes=3, n_features=16, channels=(8, 8)).eval()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x - 17.5), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(plain(x), plain(x - 17.5), atol=1e-3)


def test_panns_rejects_wrong_input_shape():
    model = create_model("cnn", n_classes=3, n_features=64)
    with pytest.raises(ParameterError, match=r"expected \(B, 64, T\).*\(2, 40, 30\)"):
        model(torch.zeros(2, 40, 30))
