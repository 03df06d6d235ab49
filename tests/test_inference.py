"""Clip-level inference: windows cover the clip, batching does not change results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from soundclass.dsp.augment import crop_or_pad
from soundclass.errors import ParameterError
from soundclass.inference.calibration import softmax
from soundclass.inference.predictor import (
    available_cores,
    cut_window,
    plan_pieces,
    predict_logits,
    standardize,
    torch_threads,
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


FROZEN = np.array([[-0.9302077, 0.08326247, -0.31976557], [-0.88637674, 0.05534422, -0.30602473]])


def _old_logits(model, clips, clip_frames, mean=None, std=None, tta=1):
    """The predictor before issue 9, frozen: every clip padded to whole windows of ``clip_frames``."""
    out = []
    for clip in clips:
        z = clip if mean is None else (clip - mean[:, None]) / std[:, None]
        wins = []
        for s in window_starts(z.shape[1], clip_frames, tta=tta):
            w = np.repeat(z.min(axis=1, keepdims=True), clip_frames, axis=1)  # pad like crop_or_pad
            lo, hi = max(s, 0), min(s + clip_frames, z.shape[1])
            w[:, lo - s : hi - s] = z[:, lo:hi]
            wins.append(w)
        with torch.no_grad():
            out.append(model(torch.from_numpy(np.stack(wins))).numpy().mean(axis=0))
    return np.stack(out)


@pytest.mark.parametrize("tta", [1, 3])
def test_windowed_logits_equal_old_path_for_clips_that_fill_windows(tta):
    model = FrameSum()
    clips = _clips()
    mean, std = np.arange(4, dtype=np.float32), np.full(4, 2.0, np.float32)
    got = predict_logits(model, clips, input_kind="sequence", clip_frames=8, norm_mean=mean, norm_std=std, tta=tta)
    assert got.shape == (7, 3) and got.dtype == np.float32
    old = _old_logits(model, clips, 8, mean, std, tta=tta)
    long = [i for i, c in enumerate(clips) if c.shape[1] >= 8]
    assert 0 < len(long) < len(clips)
    np.testing.assert_allclose(got[long], old[long], rtol=1e-5, atol=1e-6)
    for i, clip in enumerate(clips):  # short clips: scored whole, at their own length
        if clip.shape[1] < 8:
            z = (clip - mean[:, None]) / std[:, None]
            with torch.no_grad():
                want = model(torch.from_numpy(z[None])).numpy()[0]
            np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-6)
    padded = predict_logits(model, clips, input_kind="sequence", clip_frames=8, norm_mean=mean,
                            norm_std=std, tta=tta, pad_to_window=True)
    np.testing.assert_allclose(padded, old, rtol=1e-5, atol=1e-6)  # the old behaviour, on request


def test_frozen_reference_logits():
    """Inline values computed once with the pre-issue-9 predictor (every clip fills its windows)."""
    model = FrameSum()
    x = np.linspace(-1.0, 1.0, 4 * 12, dtype=np.float32).reshape(4, 12)
    got = predict_logits(model, [x, x[:, :8]], input_kind="sequence", clip_frames=8)
    want = _old_logits(model, [x, x[:, :8]], 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got, FROZEN, rtol=1e-5, atol=1e-6)


def test_plan_pieces_pads_only_to_min_frames():
    pieces = plan_pieces([3, 20, 10], clip_frames=10, min_frames=5)
    assert pieces == [(0, -1, 5), (1, 0, 10), (1, 10, 10), (2, 0, 10)]
    assert plan_pieces([3], clip_frames=10, pad_to_window=True) == [(0, -3, 10)]
    assert plan_pieces([3, 7], clip_frames=None, tta=3) == [(0, 0, 3), (1, 0, 7)]


class MinFrames(FrameSum):
    min_frames = 6

    def forward(self, x):
        assert x.shape[-1] >= self.min_frames
        return super().forward(x)


def test_short_clips_padded_to_model_minimum_like_training():
    model = MinFrames()
    clip = np.random.default_rng(3).standard_normal((4, 3)).astype(np.float32)
    got = predict_logits(model, [clip], input_kind="sequence", clip_frames=20)
    with torch.no_grad():
        want = model(torch.from_numpy(crop_or_pad(clip, 6, mode="center")[None])).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_cnn_batch_equals_singles_for_mixed_lengths():
    from soundclass.models import create_model

    torch.manual_seed(0)
    model = create_model("cnn", n_classes=3, n_features=64, channels=(8, 8, 16, 16))
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal((64, int(t))).astype(np.float32) for t in (30, 7, 30, 45, 12, 30, 61)]
    together = predict_logits(model, clips, input_kind="sequence", clip_frames=40, batch_size=16)
    singles = np.concatenate([predict_logits(model, [c], input_kind="sequence", clip_frames=40) for c in clips])
    np.testing.assert_allclose(together, singles, rtol=1e-4, atol=1e-5)


def test_threads_restored():
    before = torch.get_num_threads()
    predict_logits(FrameSum(), _clips(), input_kind="sequence", clip_frames=8, threads=1)
    assert torch.get_num_threads() == before
    with torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    assert available_cores() >= 1


def test_logits_callable_backend():
    model = FrameSum()
    clips = _clips(4)

    def run(batch):
        with torch.no_grad():
            return model(torch.from_numpy(batch)).numpy()

    a = predict_logits(run, clips, input_kind="sequence", clip_frames=8)
    b = predict_logits(model, clips, input_kind="sequence", clip_frames=8)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 12])
def test_short_clip_window_matches_training_padding(n):
    x = np.random.default_rng(n).standard_normal((4, n)).astype(np.float32)
    (start,) = window_starts(n, 8) if n < 8 else (None,)
    if start is not None:
        np.testing.assert_array_equal(cut_window(x, int(start), 8), crop_or_pad(x, 8, mode="center"))
    for s in window_starts(n, 8, tta=3):
        w = cut_window(x, int(s), 8)
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
