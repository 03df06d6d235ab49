"""Training data helpers: class balance, standardization, clip length, seeds, the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _training_models import VEC, registered
from soundclass.dsp import augment
from soundclass.errors import ParameterError
from soundclass.training import (
    ClipDataset,
    TrainConfig,
    class_weights,
    clip_seconds_from_data,
    derive_seed,
    make_loaders,
    norm_stats,
    resolve_config,
    sample_weights,
)
from soundclass.training.data import (
    BucketBatchSampler,
    bucket_from_data,
    loss_weights,
    padding_share,
    set_epoch,
)


def test_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights(y, n_classes=3), ref, rtol=1e-6)
    w = class_weights(np.array([0, 0, 2]), n_classes=4)  # absent classes get 0
    np.testing.assert_allclose(w, [0.75, 0, 1.5, 0])
    np.testing.assert_allclose(loss_weights(y, n_classes=3, balance="sqrt"), np.sqrt(ref), rtol=1e-6)
    np.testing.assert_allclose(loss_weights(y, n_classes=3, balance="weights"), ref, rtol=1e-6)
    assert loss_weights(y, n_classes=3, balance="none") is None
    assert loss_weights(y, n_classes=3, balance="sampler") is None
    s = sample_weights(y, n_classes=3)
    np.testing.assert_allclose([s[y == c].sum() for c in range(3)], [1, 1, 1])


def test_norm_stats_and_clip_seconds():
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((4, t)).astype(np.float32) * 3 + 5 for t in (5, 17, 30)]
    mean, std = norm_stats(feats)
    allf = np.concatenate(feats, axis=1)
    np.testing.assert_allclose(mean, allf.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(std, allf.std(axis=1), rtol=1e-4)
    _, std0 = norm_stats([np.ones((2, 3), np.float32)])
    assert np.all(std0 > 0)
    assert clip_seconds_from_data([10] * 19 + [1000], frame_rate=10.0) == pytest.approx(1.0)
    assert clip_seconds_from_data([1, 2], frame_rate=10.0) == 0.5
    assert clip_seconds_from_data([10_000], frame_rate=10.0) == 10.0
    # the 90th percentile, at most twice the median (a long tail is cropped)
    frames = [20] * 6 + [40] * 3 + [400]
    assert clip_seconds_from_data(frames, frame_rate=10.0) == pytest.approx(4.0)
    assert clip_seconds_from_data(frames, frame_rate=10.0, median_ratio=None) == pytest.approx(7.6)
    assert clip_seconds_from_data(frames, frame_rate=10.0, percentile=50) == pytest.approx(2.0)
    assert clip_seconds_from_data([20] * 8 + [30] * 2, frame_rate=10.0) == pytest.approx(3.0)
    with pytest.raises(ParameterError, match="percentile=101"):
        clip_seconds_from_data(frames, frame_rate=10.0, percentile=101)


def test_crop_percentile_and_bucket_settings_resolve():
    cfg = resolve_config(TrainConfig(model="cnn"))  # "auto" resolves per candidate
    assert cfg.bucket is None and cfg.clip_percentile is None  # decided from the data by fit
    assert resolve_config(TrainConfig(model="cnn", bucket=False, clip_percentile=90)).bucket is False
    assert padding_share([10, 10, 20, 40], clip_frames=20) == pytest.approx(0.25)
    assert not bucket_from_data([10, 10, 20, 40], clip_frames=20)  # 25 %: padding is an augmentation
    assert bucket_from_data([2, 5, 20, 40], clip_frames=20)  # 41 %
    with pytest.raises(ParameterError, match="clip_percentile=120"):
        TrainConfig(clip_percentile=120)


def test_derive_seed_is_stable_and_distinct():
    assert derive_seed(0, 1, "x") == derive_seed(0, 1, "x")
    assert len({derive_seed(0, e, "x") for e in range(50)} | {derive_seed(1, 0, "x")}) == 51




def test_clip_dataset_crops_depend_on_seed_epoch_and_item_only():
    rng = np.random.default_rng(0)
    feats = [rng.standard_normal((3, t)).astype(np.float32) for t in (4, 20, 50)]
    ds = ClipDataset(feats, [0, 1, 2], clip_frames=10, seed=7)
    ds.set_epoch(2)
    crops = [ds[i][0] for i in range(3)]
    assert all(c.shape == (3, 10) for c in crops)
    again = ClipDataset(feats, [0, 1, 2], clip_frames=10, seed=7)
    again.set_epoch(2)
    assert all(torch.equal(again[i][0], crops[i]) for i in (2, 0, 1))  # any order
    again.set_epoch(3)
    assert not torch.equal(again[2][0], crops[2])


def test_loader_order_is_reseeded_per_epoch():
    with registered():
        cfg = resolve_config(TrainConfig(model=VEC, batch_size=4, seed=1))
    feats = [np.full(2, i, np.float32) for i in range(12)]
    loader = make_loaders(feats, [i % 3 for i in range(12)], config=cfg, n_classes=3, clip_frames=None)

    def order(epoch):
        set_epoch(loader, epoch, cfg.seed)
        return torch.cat([x[:, 0] for x, _ in loader]).tolist()

    assert order(0) == order(0) and order(0) != order(1)
    assert sorted(order(1)) == list(range(12))  # every clip once (12 = 3 full batches)


def _clips(lengths, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n_features, t)).astype(np.float32) for t in lengths]


def test_single_crops_are_crop_or_pad_with_the_item_seed():
    feats = _clips((4, 20, 50))
    ds = ClipDataset(feats, [0, 1, 2], clip_frames=10, seed=7)
    ds.set_epoch(3)
    for i, f in enumerate(feats):
        ref = augment.crop_or_pad(f, 10, mode="random", rng=np.random.default_rng(derive_seed(7, 3, i)))
        np.testing.assert_array_equal(ds[i][0].numpy(), ref)


@pytest.mark.parametrize("pad_to_batch", [False, True])
def test_batch_equals_stacked_singles(pad_to_batch):
    feats = _clips((4, 20, 50, 7, 9))
    ds = ClipDataset(feats, [0, 1, 2, 0, 1], clip_frames=30, seed=1, pad_to_batch=pad_to_batch)
    ds.set_epoch(2)
    idx = [3, 0, 4]  # lengths 7, 4, 9
    x, y = ds.__getitems__(idx)
    length = 9 if pad_to_batch else 30  # the batch's longest clip, or always the crop length
    assert x.shape == (3, 3, length) and x.dtype == torch.float32 and y.tolist() == [0, 0, 1]
    for row, i in zip(x, idx, strict=True):
        ref = augment.crop_or_pad(feats[i], length, mode="random", rng=np.random.default_rng(derive_seed(1, 2, i)))
        np.testing.assert_array_equal(row.numpy(), ref)
    x, _ = ds.__getitems__([1, 2])  # 20 and 50 frames: cropped to the crop length at most
    assert x.shape[2] == 30
    x, _ = ds.__getitems__([1])
    assert x.shape[2] == (20 if pad_to_batch else 30)


def _epoch_batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_bucket_batches_are_seeded_complete_and_homogeneous():
    rng = np.random.default_rng(0)
    lengths = np.exp(rng.normal(np.log(250), 0.8, size=200)).astype(int) + 1

    def make(bucket, seed=3):
        gen = torch.Generator().manual_seed(derive_seed(seed, "sampler"))
        return BucketBatchSampler(torch.utils.data.RandomSampler(range(200), generator=gen), lengths,
                                  batch_size=16, drop_last=False, seed=seed, bucket=bucket)

    a, b = make(True), make(True)
    assert _epoch_batches(a, 1) == _epoch_batches(b, 1)  # same seed and epoch, same batches
    assert _epoch_batches(a, 1) != _epoch_batches(a, 2)
    assert _epoch_batches(make(True, seed=4), 1) != _epoch_batches(a, 1)
    batches = _epoch_batches(a, 2)
    assert len(batches) == len(a) == 13 and sorted(sum(batches, [])) == list(range(200))

    def padding(batches):
        return sum(lengths[bt].max() * len(bt) - lengths[bt].sum() for bt in batches) / sum(
            lengths[bt].max() * len(bt) for bt in batches)

    plain = _epoch_batches(make(False), 2)
    assert sorted(sum(plain, [])) == list(range(200))
    assert padding(batches) < 0.25 < 0.5 < padding(plain)
    assert not all(np.all(np.diff(lengths[bt]) >= 0) for bt in batches)  # jitter: not a fixed sort


def test_bucket_batches_drop_the_tail_and_follow_the_sampler():
    lengths = np.arange(1, 51)
    w = torch.tensor([1.0] * 10 + [0.0] * 40, dtype=torch.double)  # only items 0-9 can be drawn
    gen = torch.Generator().manual_seed(0)
    s = BucketBatchSampler(torch.utils.data.WeightedRandomSampler(w, 50, generator=gen), lengths,
                           batch_size=8, drop_last=True, seed=0)
    batches = _epoch_batches(s, 0)
    assert len(batches) == len(s) == 6 and all(len(bt) == 8 for bt in batches)
    assert max(max(bt) for bt in batches) < 10


def test_loader_crops_each_bucketed_batch_to_its_longest_clip():
    with registered():
        cfg = resolve_config(TrainConfig(model=VEC, batch_size=4, seed=2))
    lengths = [3, 4, 5, 30, 31, 32, 60, 61, 200, 3, 4, 31]
    feats = _clips(lengths)
    loader = make_loaders(feats, [i % 2 for i in range(12)], config=cfg.replace(bucket=True), n_classes=2,
                          clip_frames=40)
    set_epoch(loader, 0, cfg.seed)
    shapes = [x.shape[2] for x, _ in loader]
    assert len(shapes) == 3 and max(shapes) == 40 and min(shapes) <= 5
    off = make_loaders(feats, [i % 2 for i in range(12)], config=cfg.replace(bucket=False), n_classes=2,
                       clip_frames=40)
    assert {x.shape[2] for x, _ in off} == {40}
