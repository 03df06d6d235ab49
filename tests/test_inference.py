"""Clip-level inference: windows cover the clip, batching does not change results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from soundclass.dsp.augment import crop_or_pad
from soundclass.errors import ParameterError
from soundclass.inference.predictor import (
    _window,
    predict_logits,
    softmax,
    standardize,
    window_starts,
)


class FrameSum(nn.Module):
    """Logits = linear map of the per-window time-mean (deterministic, no padding tricks)."""

    def __init__(self, n_features=4, n_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.fc(x.mean(dim=-1) if x.ndim == 3 else x)


@pytest.mark.parametrize(("n", "length"), [(10, 10), (11, 10), (25, 10), (100, 7), (3, 10), (1, 5)])
@pytest.mark.parametrize("tta", [1, 2, 3])
def test_window_starts_cover_clip(n, length, tta):
    starts = window_starts(n, length, tta=tta)
    assert np.all(np.diff(starts) > 0)
    if n >= length:
        assert starts[0] == 0 and starts[-1] == n - length
        covered = np.zeros(n, bool)
        for s in starts:
            covered[s : s + length] = True
        assert covered.all()
        assert len(starts) <= int(np.ceil(n / length)) * tta
        if tta == 1:
            assert len(starts) == int(np.ceil(n / length))
    else:
        assert np.all(starts <= 0) and np.all(starts >= n - length)  # the clip stays inside the window
        if tta == 1:
            assert starts.tolist() == [-((length - n) // 2)]


def test_window_starts_rejects_bad_values():
    with pytest.raises(ParameterError, match="clip_frames=0"):
        window_starts(10, 0)
    with pytest.raises(ParameterError, match="tta=0"):
        window_starts(10, 5, tta=0)


def _clips(seed=0, n=7):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((4, int(t))).astype(np.float32) for t in rng.integers(2, 40, n)]


def test_windowed_logits_are_mean_over_windows():
    model = FrameSum()
    clips = _clips()
    mean, std = np.arange(4, dtype=np.float32), np.full(4, 2.0, np.float32)
    got = predict_logits(model, clips, input_kind="sequence", clip_frames=8, norm_mean=mean, norm_std=std)
    assert got.shape == (7, 3) and got.dtype == np.float32
    for clip, row in zip(clips, got, strict=True):
        z = (clip - mean[:, None]) / std[:, None]
        wins = []
        for s in window_starts(z.shape[1], 8):
            w = np.repeat(z.min(axis=1, keepdims=True), 8, axis=1)  # pad like crop_or_pad
            lo, hi = max(s, 0), min(s + 8, z.shape[1])
            w[:, lo - s : hi - s] = z[:, lo:hi]
            wins.append(w)
        with torch.no_grad():
            ref = model(torch.from_numpy(np.stack(wins))).numpy().mean(axis=0)
        np.testing.assert_allclose(row, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 12])
def test_short_clip_window_matches_training_padding(n):
    x = np.random.default_rng(n).standard_normal((4, n)).astype(np.float32)
    (start,) = window_starts(n, 8) if n < 8 else (None,)
    if start is not None:
        np.testing.assert_array_equal(_window(x, int(start), 8), crop_or_pad(x, 8, mode="center"))
    for s in window_starts(n, 8, tta=3):
        w = _window(x, int(s), 8)
        assert w.shape == (4, 8)
        if n < 8:  # the whole clip is inside, the rest is the row minimum
            np.testing.assert_array_equal(w[:, -s : -s + n], x)
            assert np.all(w >= x.min(axis=1, keepdims=True))


def test_batch_size_and_order_do_not_matter():
    model = FrameSum()
    clips = _clips(1, n=9)
    a = predict_logits(model, clips, input_kind="sequence", clip_frames=6, batch_size=1)
    b = predict_logits(model, clips, input_kind="sequence", clip_frames=6, batch_size=64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    c = predict_logits(model, clips[::-1], input_kind="sequence", clip_frames=6, batch_size=5)
    np.testing.assert_allclose(c[::-1], b, rtol=1e-5, atol=1e-6)
    single = predict_logits(model, [clips[3]], input_kind="sequence", clip_frames=6)
    np.testing.assert_allclose(single[0], b[3], rtol=1e-5, atol=1e-6)


def test_tta_and_whole_clips():
    model = FrameSum()
    clips = _clips(2)
    plain = predict_logits(model, clips, input_kind="sequence", clip_frames=6)
    tta = predict_logits(model, clips, input_kind="sequence", clip_frames=6, tta=3)
    assert tta.shape == plain.shape and not np.allclose(tta, plain)
    whole = predict_logits(model, clips, input_kind="sequence", clip_frames=None, batch_size=2)
    with torch.no_grad():
        ref = np.stack([model(torch.from_numpy(c[None])).numpy()[0] for c in clips])
    np.testing.assert_allclose(whole, ref, rtol=1e-5, atol=1e-6)


def test_vector_input_and_eval_mode():
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 2))
    model.train()
    x = np.random.default_rng(0).standard_normal((10, 4)).astype(np.float32)
    a = predict_logits(model, x, input_kind="vector", clip_frames=None, batch_size=3)
    b = predict_logits(model, list(x), input_kind="vector", clip_frames=None, batch_size=64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # dropout off: eval mode
    assert not model.training


def test_bad_inputs_have_clear_errors():
    model = FrameSum()
    with pytest.raises(ParameterError, match=r"features\[1\] has shape"):
        predict_logits(model, [np.zeros((4, 5)), np.zeros(4)], input_kind="sequence", clip_frames=3)
    with pytest.raises(ParameterError, match="input_kind"):
        predict_logits(model, [np.zeros((4, 5))], input_kind="image", clip_frames=3)
    with pytest.raises(ParameterError, match="empty"):
        predict_logits(model, [], input_kind="sequence", clip_frames=3)
    with pytest.raises(ParameterError, match="rows"):
        standardize(np.zeros((5, 3)), norm_mean=np.zeros(4), norm_std=np.ones(4))


def test_softmax_rows_sum_to_one():
    p = softmax(np.array([[1000.0, 0.0], [0.0, 0.0]]))
    np.testing.assert_allclose(p, [[1, 0], [0.5, 0.5]], atol=1e-6)
