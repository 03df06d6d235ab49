"""augment: crop_or_pad, spec_augment, freq_warp, time_stretch, mixup, mix_targets with explicit generators."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from soundclass.dsp.augment import (
    crop_or_pad,
    freq_warp,
    mix_targets,
    mixup,
    spec_augment,
    time_stretch,
)
from soundclass.errors import ParameterError


def _feature(n_features=4, n_frames=10):
    return np.arange(n_features * n_frames, dtype=np.float32).reshape(n_features, n_frames) - 20.0


# ---------------------------------------------------------------- crop_or_pad


def test_center_crop_takes_the_middle():
    x = _feature(n_frames=10)
    out = crop_or_pad(x, 6, mode="center")
    np.testing.assert_array_equal(out, x[:, 2:8])
    assert out.dtype == x.dtype


def test_random_crop_is_a_window_and_seeded():
    x = _feature(n_frames=50)
    a = crop_or_pad(x, 7, rng=np.random.default_rng(3))
    b = crop_or_pad(x, 7, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    start = int(a[0, 0] - x[0, 0])
    np.testing.assert_array_equal(a, x[:, start : start + 7])
    starts = {int(crop_or_pad(x, 7, rng=np.random.default_rng(s))[0, 0] - x[0, 0]) for s in range(40)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 43


def test_exact_length_is_a_copy():
    x = _feature(n_frames=8)
    out = crop_or_pad(x, 8, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, x)
    out[0, 0] = 99.0
    assert x[0, 0] != 99.0


def test_pad_uses_per_row_minimum_and_centres():
    x = np.array([[1.0, 5.0, 3.0], [-80.0, -10.0, -20.0]], dtype=np.float32)
    out = crop_or_pad(x, 7, mode="center")
    expected = np.array(
        [[1, 1, 1, 5, 3, 1, 1], [-80, -80, -80, -10, -20, -80, -80]], dtype=np.float32
    )
    np.testing.assert_array_equal(out, expected)


def test_pad_value_and_random_placement():
    x = np.ones((2, 3), dtype=np.float32)
    offsets = set()
    for seed in range(30):
        out = crop_or_pad(x, 8, rng=np.random.default_rng(seed), pad_value=0.0)
        assert out.shape == (2, 8) and out.sum() == 6.0
        cols = np.flatnonzero(out[0])
        np.testing.assert_array_equal(cols, np.arange(cols[0], cols[0] + 3))  # contiguous
        offsets.add(int(cols[0]))
    assert offsets == set(range(6))


def test_crop_or_pad_rejects_bad_input():
    x = _feature()
    with pytest.raises(ParameterError, match="length=0"):
        crop_or_pad(x, 0, mode="center")
    with pytest.raises(ParameterError, match="mode='left'"):
        crop_or_pad(x, 5, mode="left")
    with pytest.raises(ParameterError, match="rng"):
        crop_or_pad(x, 5)  # random mode without a generator
    with pytest.raises(ParameterError, match=r"\(n_features, T\)"):
        crop_or_pad(np.zeros(10), 5, mode="center")


# ---------------------------------------------------------------- spec_augment


def _batch(seed=0, shape=(3, 16, 40)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_spec_augment_degenerate_widths_are_identity():
    x = _batch()
    gen = torch.Generator().manual_seed(0)
    out = spec_augment(x, generator=gen, freq_width=0, time_width=0)
    assert torch.equal(out, x)
    out = spec_augment(x, generator=gen, freq_masks=0, time_masks=0)
    assert torch.equal(out, x)


def test_spec_augment_is_seeded_and_does_not_modify_input():
    x = _batch()
    before = x.clone()
    a = spec_augment(x, generator=torch.Generator().manual_seed(5))
    b = spec_augment(x, generator=torch.Generator().manual_seed(5))
    c = spec_augment(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(x, before)


def test_spec_augment_masks_whole_rows_with_example_mean():
    x = _batch(shape=(4, 16, 40))
    out = spec_augment(
        x, generator=torch.Generator().manual_seed(1), freq_masks=1, freq_width=16, time_masks=0
    )
    for b in range(4):
        mean = x[b].mean()
        changed = (out[b] != x[b]).any(dim=1)  # masked frequency rows
        rows = torch.nonzero(changed).flatten()
        if rows.numel():
            assert torch.all(out[b, rows] == mean)  # the whole row, every frame
            assert rows.max() - rows.min() + 1 == rows.numel()  # one contiguous band
        assert torch.equal(out[b, ~changed], x[b, ~changed])


def test_spec_augment_time_mask_width_bound():
    x = _batch(shape=(64, 8, 50))
    out = spec_augment(
        x, generator=torch.Generator().manual_seed(2), freq_masks=0, time_masks=1, time_width=6
    )
    widths = (out != x).any(dim=1).sum(dim=1)  # masked frames per example
    assert widths.max() <= 6
    assert widths.max() >= 4  # with 64 draws from 0..6, a wide mask appears


def test_spec_augment_widths_clipped_to_size():
    x = _batch(shape=(2, 4, 5))
    out = spec_augment(x, generator=torch.Generator().manual_seed(0), freq_width=100, time_width=100)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_spec_augment_rejects_bad_input():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ParameterError, match="freq_width=-1"):
        spec_augment(_batch(), generator=gen, freq_width=-1)
    with pytest.raises(ParameterError, match="generator"):
        spec_augment(_batch(), generator=np.random.default_rng(0))
    with pytest.raises(ParameterError, match=r"\(B, F, T\)"):
        spec_augment(torch.zeros(3, 4), generator=gen)


# ---------------------------------------------------------------- mixup


def test_mixup_alpha_zero_is_identity():
    x, y = _batch(), torch.tensor([0, 1, 2])
    xm, ya, yb, lam = mixup(x, y, alpha=0.0, generator=torch.Generator().manual_seed(0))
    assert lam == 1.0 and torch.equal(xm, x) and torch.equal(ya, y) and torch.equal(yb, y)


def test_mixup_is_a_convex_combination_with_a_permutation():
    x, y = _batch(shape=(6, 4, 5)), torch.arange(6)
    xm, ya, yb, lam = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(3))
    assert 0.0 <= lam <= 1.0
    assert torch.equal(ya, y)
    assert sorted(yb.tolist()) == list(range(6))  # y[perm] with y = arange: perm itself
    torch.testing.assert_close(xm, lam * x + (1 - lam) * x[yb])


def test_mixup_is_seeded_and_large_alpha_mixes_evenly():
    x, y = _batch(), torch.tensor([0, 1, 2])
    a = mixup(x, y, alpha=0.2, generator=torch.Generator().manual_seed(9))
    b = mixup(x, y, alpha=0.2, generator=torch.Generator().manual_seed(9))
    assert a[3] == b[3] and torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    lams = [mixup(x, y, alpha=1e4, generator=torch.Generator().manual_seed(s))[3] for s in range(5)]
    np.testing.assert_allclose(lams, 0.5, atol=0.02)  # Beta(a, a) concentrates at 0.5


def test_mixup_rejects_bad_input():
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ParameterError, match="alpha=-1"):
        mixup(_batch(), torch.arange(3), alpha=-1.0, generator=gen)
    with pytest.raises(ParameterError, match="3 examples but y has 2"):
        mixup(_batch(), torch.arange(2), alpha=0.2, generator=gen)


def test_mix_targets_soft_labels():
    soft = mix_targets(torch.tensor([0, 1]), torch.tensor([2, 1]), 0.75, n_classes=3)
    torch.testing.assert_close(soft, torch.tensor([[0.75, 0.0, 0.25], [0.0, 1.0, 0.0]]))
    smooth = mix_targets(torch.tensor([0]), torch.tensor([0]), 1.0, n_classes=4, label_smoothing=0.2)
    torch.testing.assert_close(smooth, torch.tensor([[0.85, 0.05, 0.05, 0.05]]))
    torch.testing.assert_close(smooth.sum(dim=1), torch.ones(1))
    with pytest.raises(ParameterError, match="lam=1.5"):
        mix_targets(torch.tensor([0]), torch.tensor([0]), 1.5, n_classes=2)


# ---------------------------------------------------------------- freq_warp / time_stretch

WARPS = [(freq_warp, "max_warp"), (time_stretch, "max_stretch")]


@pytest.mark.parametrize(("fn", "arg"), WARPS)
def test_warps_zero_range_is_identity(fn, arg):
    x = _batch()
    out = fn(x, generator=torch.Generator().manual_seed(0), **{arg: 0.0})
    assert torch.equal(out, x) and out is not x


@pytest.mark.parametrize(("fn", "arg"), WARPS)
def test_warps_are_seeded_keep_shape_and_input(fn, arg):
    x = _batch(shape=(4, 16, 40))
    before = x.clone()
    a = fn(x, generator=torch.Generator().manual_seed(5), **{arg: 0.15})
    b = fn(x, generator=torch.Generator().manual_seed(5), **{arg: 0.15})
    c = fn(x, generator=torch.Generator().manual_seed(6), **{arg: 0.15})
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert torch.equal(x, before)
    # linear interpolation never leaves the range of the input
    assert a.min() >= x.min() - 1e-5 and a.max() <= x.max() + 1e-5


@pytest.mark.parametrize(("fn", "arg"), WARPS)
def test_warps_reject_bad_arguments(fn, arg):
    x = _batch()
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(ParameterError, match=arg):
        fn(x, generator=gen, **{arg: 1.0})
    with pytest.raises(ParameterError, match=arg):
        fn(x, generator=gen, **{arg: -0.1})
    with pytest.raises(ParameterError, match="generator"):
        fn(x, generator=0, **{arg: 0.1})
    with pytest.raises(ParameterError, match="shape"):
        fn(x[0], generator=gen, **{arg: 0.1})


def test_freq_warp_moves_a_band_by_the_drawn_factor():
    # A single bright row at 20 of 64 lands near 20 * alpha, alpha in [0.8, 1.2].
    x = torch.zeros(64, 64, 5)
    x[:, 20, :] = 1.0
    out = freq_warp(x, max_warp=0.2, generator=torch.Generator().manual_seed(0))
    peaks = out[:, :, 0].argmax(dim=1).float()  # (B,)
    assert ((peaks >= 20 * 0.8 - 1) & (peaks <= 20 * 1.2 + 1)).all()
    assert len(set(peaks.tolist())) > 3  # per-example factors
    assert torch.equal(out[:, :, 0], out[:, :, 4])  # time untouched


def test_time_stretch_scales_an_event_around_the_centre_and_pads_with_row_minimum():
    # A bright span of 20 frames in the middle of 101 lasts about 20 * r frames afterwards.
    x = torch.full((64, 3, 101), -80.0)
    x[:, :, 40:61] = 0.0
    out = time_stretch(x, max_stretch=0.3, generator=torch.Generator().manual_seed(0))
    loud = (out[:, 0, :] > -40).sum(dim=1).float()  # (B,) frames above half level
    assert ((loud >= 21 * 0.7 - 2) & (loud <= 21 * 1.3 + 2)).all()
    assert len(set(loud.tolist())) > 3
    assert out[:, 0, 50].eq(0.0).all()  # the centre stays put
    # sped-up examples are padded at both ends with the row minimum (not zeros, not the edge value)
    y = torch.linspace(-60.0, 0.0, 50).repeat(8, 2, 1)  # (8, 2, 50), loudest at the end
    out = time_stretch(y, max_stretch=0.5, generator=torch.Generator().manual_seed(1))
    padded = out[:, 0, -1] == -60.0
    assert padded.any() and (~padded).any()
    assert (out[padded][:, :, 0] == -60.0).all()
    assert ((out[~padded][:, 0, -1] > -60.0) & (out[~padded][:, 0, -1] < 0.0)).all()  # slowed: cropped
