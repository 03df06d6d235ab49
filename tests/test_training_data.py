"""Training data helpers: class balance, standardization, clip length, seeds, the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _training_models import VEC, registered
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
from soundclass.training.data import set_epoch


def test_class_weights_match_sklearn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    ref = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights(y, n_classes=3), ref, rtol=1e-6)
    w = class_weights(np.array([0, 0, 2]), n_classes=4)  # absent classes get 0
    np.testing.assert_allclose(w, [0.75, 0, 1.5, 0])
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
