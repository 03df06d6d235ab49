"""aiSFX: the weights reader, the front end against librosa, the network against the reference."""

from __future__ import annotations

import collections
import importlib.metadata
import importlib.util
import os
import pickle
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch

from conftest import make_signal
from soundclass.audio import load, resample
from soundclass.dsp.aisfx import AISFX_SR, aisfx_blocks, aisfx_logmel, frames_to_blocks
from soundclass.errors import CheckpointError, ParameterError
from soundclass.models import aisfx_weights
from soundclass.models.aisfx import (
    AisfxClassifier,
    AisfxEmbeddingNet,
    aisfx_embedding,
    clip_embedding,
    embed_blocks,
    embed_clip,
    param_groups,
    pool_embeddings,
)
from soundclass.models.aisfx_weights import INSTALL_COMMAND, checkpoint_path, load_aisfx_state

# float32 STFTs summed in a different order; log10(1e4 S + 1) magnifies the rounding of
# the quietest bands to a few 1e-6
FRONT_TOL = {"atol": 1e-5, "rtol": 1e-4}


def _librosa_logmel(y: np.ndarray) -> np.ndarray:
    """The aiSFX recipe written with librosa (aisfx/spectrogram/spectrogram_librosa.py)."""
    peak = np.max(np.abs(y))
    y = y / (peak if peak > 0 else 1.0)
    S = librosa.feature.melspectrogram(
        y=y, sr=44100, n_fft=2048, win_length=2048, hop_length=1024, n_mels=96, fmin=0,
        fmax=22050, htk=True, norm=1.0, power=2.0, center=True,
    )
    return np.log10(S * 10000.0 + 1) / 9.457798957824707


@pytest.fixture(scope="module")
def reference_net():
    """``aisfx.models.cnn2d.EmbeddingNet('max', 3, 1, 64)`` from its file, with the same weights."""
    path = importlib.metadata.distribution("aisfx").locate_file("aisfx/models/cnn2d.py")
    spec = importlib.util.spec_from_file_location("_aisfx_cnn2d_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    net = module.EmbeddingNet("max", 3, 1, 64)
    state = {k[len("embedding_net."):]: v for k, v in load_aisfx_state().items()}
    net.load_state_dict(state, strict=True)
    return net.eval()


# --------------------------------------------------------------------------- weights


def test_checkpoint_has_the_embedding_network():
    state = load_aisfx_state()
    assert checkpoint_path().name == "checkpoint.pth"
    assert len(state) == 48  # 4 blocks x (2 convs + 2 BN x 5 tensors)
    assert not any(k.startswith("fc") for k in state)
    assert state["embedding_net.conv_block1.conv1.weight"].shape == (64, 1, 3, 3)
    assert state["embedding_net.conv_block4.conv2.weight"].shape == (512, 512, 3, 3)
    n = sum(v.numel() for k, v in state.items() if k.endswith(("weight", "bias")))
    assert 4.6e6 < n < 4.8e6


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _Sub(collections.OrderedDict):
    pass


@pytest.mark.parametrize("payload", [_Evil(), _Sub(a=torch.zeros(1)), np.float32(1.0)],
                         ids=["os.system", "OrderedDict-subclass", "float32-scalar-dtype"])
def test_a_file_with_another_global_is_refused(tmp_path, payload):
    path = tmp_path / "checkpoint.pth"
    with open(path, "wb") as fh:
        pickle.dump(({"embedding_net.x": torch.zeros(1)}, {"k": payload}), fh, protocol=2)
    with pytest.raises(CheckpointError, match="refused to unpickle.*Unsupported global"):
        load_aisfx_state(path)


def test_a_torch_saved_tuple_with_allowed_globals_loads(tmp_path):
    path = tmp_path / "checkpoint.pth"
    w = torch.arange(3.0)
    torch.save(({"embedding_net.w": w, "fc.0.weight": w}, {"a": (1, 2)}), path)
    state = load_aisfx_state(path)
    assert list(state) == ["embedding_net.w"]
    torch.testing.assert_close(state["embedding_net.w"], w)


def test_missing_or_wrong_files(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_aisfx_state(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=str(bad.name)):
        load_aisfx_state(bad)
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="tuple"):
        load_aisfx_state(other)


def test_not_installed_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", missing)
    with pytest.raises(CheckpointError) as info:
        checkpoint_path()
    assert INSTALL_COMMAND in str(info.value)
    assert INSTALL_COMMAND == "pip install --no-deps aisfx==0.1.2"


# --------------------------------------------------------------------------- front end


@pytest.mark.parametrize("seconds", [0.3, 2.0, 5.1])
def test_logmel_equals_librosa_recipe(seconds):
    y = make_signal(sr=AISFX_SR, seconds=seconds, seed=3)
    ours = aisfx_logmel(y, sr=AISFX_SR)
    ref = _librosa_logmel(y)
    assert ours.shape == ref.shape == (96, 1 + len(y) // 1024)
    np.testing.assert_allclose(ours, ref, **FRONT_TOL)


def test_logmel_resamples_and_handles_silence():
    y = make_signal(sr=22050, seconds=1.0, seed=1)
    np.testing.assert_allclose(aisfx_logmel(y, sr=22050),
                               _librosa_logmel(resample(y, orig_sr=22050, target_sr=AISFX_SR)),
                               **FRONT_TOL)
    silent = aisfx_logmel(np.zeros(44100, np.float32))
    assert np.all(silent == 0) and np.isfinite(silent).all()


def test_logmel_equals_librosa_on_real_clips(fsdd_dir):
    for path in sorted(Path(fsdd_dir).glob("*/*.wav"))[:3]:
        y, _ = load(path, sr=AISFX_SR)
        np.testing.assert_allclose(aisfx_logmel(y), _librosa_logmel(y), **FRONT_TOL)


def test_blocks_count_hop_and_padding():
    S = np.arange(96 * 260, dtype=np.float32).reshape(96, 260)
    blocks = frames_to_blocks(S)
    assert blocks.shape == (4, 100, 96)  # starts 0, 50, 100, 150; the partial block is dropped
    np.testing.assert_array_equal(blocks[1], S[:, 50:150].T)
    for t, n in [(1, 1), (99, 1), (100, 1), (149, 1), (150, 2), (200, 3)]:
        assert frames_to_blocks(S[:, :t]).shape[0] == n
    short = frames_to_blocks(S[:, :30])
    np.testing.assert_array_equal(short[0, :30], S[:, :30].T)
    assert np.all(short[0, 30:] == 0)
    assert aisfx_blocks(make_signal(sr=AISFX_SR, seconds=0.2)).shape == (1, 100, 96)
    with pytest.raises(ParameterError):
        frames_to_blocks(S[0])


# --------------------------------------------------------------------------- network


def _reference_embedding(net, y, sr):
    with torch.no_grad():
        return net(torch.from_numpy(aisfx_blocks(y, sr=sr))).numpy()


def test_embedding_equals_reference_network(reference_net):
    y = make_signal(sr=AISFX_SR, seconds=4.0, seed=7)
    ours = embed_clip(y, sr=AISFX_SR)
    assert ours.shape == (2, 512)
    np.testing.assert_allclose(ours, _reference_embedding(reference_net, y, AISFX_SR),
                               atol=1e-5, rtol=1e-5)


def test_embedding_equals_reference_on_real_clips(reference_net, fsdd_dir):
    for path in sorted(Path(fsdd_dir).glob("*/*.wav"))[::700][:4]:
        y, sr = load(path)
        np.testing.assert_allclose(embed_clip(y, sr=sr), _reference_embedding(reference_net, y, sr),
                                   atol=1e-5, rtol=1e-5, err_msg=str(path))


def test_parameter_names_are_the_checkpoints():
    names = set(AisfxEmbeddingNet().state_dict())
    assert {"embedding_net." + n for n in names} == set(load_aisfx_state())


def test_batched_blocks_equal_singles_and_pooling():
    y = make_signal(sr=AISFX_SR, seconds=6.0, seed=2)
    blocks = aisfx_blocks(y)
    all_at_once = embed_blocks(blocks)
    one_by_one = embed_blocks(blocks, batch_size=1)
    np.testing.assert_allclose(all_at_once, one_by_one, atol=1e-5, rtol=1e-5)
    pooled = clip_embedding(y, sr=AISFX_SR)
    assert pooled.shape == (1024,)
    np.testing.assert_allclose(pooled, np.r_[all_at_once.mean(0), all_at_once.max(0)], rtol=1e-6)
    feature = aisfx_embedding(y, AISFX_SR)
    assert feature.shape == (512, len(blocks)) and feature.dtype == np.float32
    np.testing.assert_allclose(pool_embeddings(feature.T), pooled, rtol=1e-6)
    with pytest.raises(ParameterError):
        embed_blocks(np.zeros((2, 50, 96)))


def test_classifier_uses_pretrained_blocks_and_pools():
    torch.manual_seed(0)
    model = AisfxClassifier(n_classes=3).eval()
    y = make_signal(sr=AISFX_SR, seconds=5.0, seed=4)
    logmel = aisfx_logmel(y)  # (96, t)
    emb = embed_clip(y, sr=AISFX_SR)  # (n_blocks, 512)
    with torch.no_grad():
        logits = model(torch.from_numpy(logmel)[None])
        want = model.head(torch.from_numpy(pool_embeddings(emb))[None])
    torch.testing.assert_close(logits, want, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # shorter than a block: zero-padded like the front end
        short = model(torch.from_numpy(logmel[:, :30])[None])
    assert short.shape == (1, 3)
    groups = param_groups(model, lr=1e-3, backbone_lr_scale=0.1)
    assert [g["lr"] for g in groups] == [1e-3, pytest.approx(1e-4)]
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(ParameterError):
        AisfxClassifier(n_classes=3, n_features=64)


def test_classifier_trains_end_to_end():
    torch.manual_seed(0)
    model = AisfxClassifier(n_classes=2, pretrained=False).train()
    x = torch.rand(2, 96, 120)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_allow_list_is_exactly_the_four_numpy_globals():
    names = []
    for g in aisfx_weights.ALLOWED_GLOBALS:
        names.append(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}")
    assert sorted(names) == ["numpy.core.multiarray.scalar", "numpy.dtype",
                             "numpy.dtypes.Float64DType", "numpy.dtypes.Int64DType"]
