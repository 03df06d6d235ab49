"""Clip-level predictions from cached features.

Vector models (``(B, n_features)``) see each clip once.  Sequence models
(``(B, n_features, T)``) are trained on windows of ``clip_frames`` frames, so a
clip is cut into windows of that length that together cover the whole clip
(evenly spaced, overlapping when needed); short clips are padded to one
window, centred.  The clip's logits are the mean of its windows' logits.
Windows of many clips are batched together.  With ``tta=k`` every clip gets
``k`` times as many, shifted, windows (short clips: the clip is placed at
``k`` evenly spaced offsets in the padded window).

Standardization (``(x - mean) / std`` per feature row) happens first; padded
frames then take each row's minimum over the clip (the silence level of a dB
feature), exactly as :func:`soundclass.dsp.augment.crop_or_pad` pads training
windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from soundclass.dsp.augment import crop_or_pad
from soundclass.errors import ParameterError, check_positive_int

__all__ = ["window_starts", "standardize", "predict_logits", "predict_proba", "softmax"]


def window_starts(n_frames: int, clip_frames: int, *, tta: int = 1) -> np.ndarray:
    """First frame of every window that covers a clip.

    Parameters
    ----------
    n_frames : int
        Frames in the clip (``T``).
    clip_frames : int
        Window length (``L``).
    tta : int
        Multiplies the number of windows (shifted copies).

    Returns
    -------
    np.ndarray [shape=(n_windows,)], int
        Sorted, unique starts.  For ``T >= L``: ``ceil(T / L) * tta`` starts
        evenly spaced over ``[0, T - L]`` (the first window starts at frame 0,
        the last ends at frame ``T``).  For ``T < L``: negative starts (the
        window begins before the clip and is padded): the centred start
        ``-((L - T) // 2)`` when ``tta=1``, else ``tta`` starts evenly spaced
        over ``[-(L - T), 0]``.
    """
    n_frames = check_positive_int("n_frames", n_frames)
    clip_frames = check_positive_int("clip_frames", clip_frames)
    tta = check_positive_int("tta", tta)
    slack = n_frames - clip_frames
    if slack >= 0:
        count = math.ceil(n_frames / clip_frames) * tta
        starts = np.rint(np.linspace(0, slack, count))
    elif tta == 1:
        starts = np.array([-((-slack) // 2)])
    else:
        starts = np.rint(np.linspace(slack, 0, tta))
    return np.unique(starts.astype(np.int64))


def _window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """``x[:, start:start + length]``, padded with each row's minimum where it leaves the clip.

    For a short clip and the centred start this equals
    ``crop_or_pad(x, length, mode='center')`` (the padding of training windows).
    """
    n = x.shape[-1]
    if start >= 0 and start + length <= n:
        return x[:, start : start + length]
    if n < length and start == -((length - n) // 2):
        return crop_or_pad(x, length, mode="center")
    out = np.repeat(x.min(axis=1, keepdims=True), length, axis=1)
    lo, hi = max(start, 0), min(start + length, n)
    out[:, lo - start : hi - start] = x[:, lo:hi]
    return out


def standardize(
    x: np.ndarray, *, norm_mean: np.ndarray | None, norm_std: np.ndarray | None
) -> np.ndarray:
    """``(x - mean) / std`` along the feature axis (axis 0), float32.

    Parameters
    ----------
    x : np.ndarray [shape=(n_features,) or (n_features, t)]
    norm_mean, norm_std : np.ndarray [shape=(n_features,)] or None
        ``None`` returns ``x`` as float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if norm_mean is None or norm_std is None:
        return x
    mean = np.asarray(norm_mean, dtype=np.float32)
    std = np.asarray(norm_std, dtype=np.float32)
    if x.shape[0] != mean.shape[0]:
        raise ParameterError(
            f"feature has {x.shape[0]} rows but the standardization stats have {mean.shape[0]}"
        )
    if x.ndim == 2:
        mean, std = mean[:, None], std[:, None]
    return (x - mean) / std


def _as_list(features: Any, input_kind: str) -> list[np.ndarray]:
    want = 1 if input_kind == "vector" else 2
    if isinstance(features, np.ndarray) and features.ndim == want + 1:
        items = list(features)
    elif isinstance(features, Sequence) or isinstance(features, np.ndarray):
        items = [np.asarray(f) for f in features]
    else:
        raise ParameterError(f"features must be a sequence of arrays, got {type(features).__name__}")
    for i, f in enumerate(items):
        if f.ndim != want:
            shape = "(n_features,)" if want == 1 else "(n_features, t)"
            raise ParameterError(
                f"features[{i}] has shape {f.shape}; {input_kind} models take {shape}"
            )
        if want == 2 and f.shape[1] == 0:
            raise ParameterError(f"features[{i}] has no frames (shape {f.shape})")
    rows = {f.shape[0] for f in items}
    if len(rows) > 1:
        raise ParameterError(f"features have different numbers of rows: {sorted(rows)}")
    return items


def _device(model: torch.nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return torch.device("cpu") if p is None else p.device


def _run(model: torch.nn.Module, batch: np.ndarray, device: torch.device) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(device)
    out = model(x)
    if out.ndim != 2 or out.shape[0] != batch.shape[0]:
        raise ParameterError(f"model returned shape {tuple(out.shape)} for a batch of {batch.shape[0]}")
    return out.float().cpu().numpy()


def predict_logits(
    model: torch.nn.Module,
    features: Any,
    *,
    input_kind: str,
    clip_frames: int | None,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
    batch_size: int = 64,
    tta: int = 1,
) -> np.ndarray:
    """Clip-level logits of a model on cached features.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode and run under ``torch.inference_mode``.
    features : sequence of np.ndarray
        ``N`` clips: ``(n_features,)`` each for ``input_kind='vector'``,
        ``(n_features, t_i)`` each (lengths may differ) for ``'sequence'``;
        or one stacked array.
    input_kind : {'sequence', 'vector'}
    clip_frames : int or None
        Window length of sequence models; ``None`` feeds each clip whole
        (clips of equal length are batched together).
    norm_mean, norm_std : np.ndarray [shape=(n_features,)], optional
        Standardization statistics of the training set.
    batch_size : int
        Windows per forward pass.
    tta : int
        Test-time augmentation: ``tta`` times as many shifted windows per clip
        (sequence models; vector models ignore it).

    Returns
    -------
    np.ndarray [shape=(N, n_classes)], float32
        Mean logits over each clip's windows.
    """
    if input_kind not in ("sequence", "vector"):
        raise ParameterError(f"input_kind={input_kind!r} must be 'sequence' or 'vector'")
    batch_size = check_positive_int("batch_size", batch_size)
    tta = check_positive_int("tta", tta)
    if clip_frames is not None:
        clip_frames = check_positive_int("clip_frames", clip_frames)
    items = _as_list(features, input_kind)
    if not items:
        raise ParameterError("features is empty: nothing to predict")
    items = [standardize(f, norm_mean=norm_mean, norm_std=norm_std) for f in items]
    device = _device(model)
    model.eval()
    with torch.inference_mode():
        if input_kind == "vector":
            outs = [_run(model, np.stack(items[i : i + batch_size]), device)
                    for i in range(0, len(items), batch_size)]
            return np.concatenate(outs).astype(np.float32)
        if clip_frames is None:
            return _whole_clips(model, items, batch_size, device)
        return _windowed(model, items, clip_frames, tta, batch_size, device)


def _whole_clips(model, items, batch_size, device) -> np.ndarray:
    order = sorted(range(len(items)), key=lambda i: items[i].shape[1])
    out: list[np.ndarray | None] = [None] * len(items)
    start = 0
    while start < len(order):
        t = items[order[start]].shape[1]
        stop = start
        while stop < len(order) and stop - start < batch_size and items[order[stop]].shape[1] == t:
            stop += 1
        idx = order[start:stop]
        logits = _run(model, np.stack([items[i] for i in idx]), device)
        for i, row in zip(idx, logits, strict=True):
            out[i] = row
        start = stop
    return np.stack(out).astype(np.float32)


def _windowed(model, items, clip_frames, tta, batch_size, device) -> np.ndarray:
    plan = [(i, int(s)) for i, f in enumerate(items)
            for s in window_starts(f.shape[1], clip_frames, tta=tta)]  # (clip, start) pairs
    owners = np.array([i for i, _ in plan], dtype=np.int64)
    sums: np.ndarray | None = None
    for b in range(0, len(plan), batch_size):
        chunk = plan[b : b + batch_size]
        batch = np.stack([_window(items[i], s, clip_frames) for i, s in chunk])  # (B, n_features, L)
        logits = _run(model, batch, device)  # (B, n_classes)
        if sums is None:
            sums = np.zeros((len(items), logits.shape[1]), dtype=np.float64)
        np.add.at(sums, owners[b : b + len(chunk)], logits)
    counts = np.bincount(owners, minlength=len(items)).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)


def softmax(logits: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def predict_proba(checkpoint: Any, features: Any, *, tta: int = 1, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a loaded :class:`~soundclass.inference.checkpoint.Checkpoint`.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`soundclass.inference.checkpoint.load_checkpoint`.
    features : sequence of np.ndarray
        Features computed with ``checkpoint.feature``.
    tta, batch_size : int
        See :func:`predict_logits`.

    Returns
    -------
    np.ndarray [shape=(N, n_classes)], float32
        Softmax of the mean window logits; columns follow ``checkpoint.classes``.
    """
    logits = predict_logits(
        checkpoint.model,
        features,
        input_kind=checkpoint.input,
        clip_frames=checkpoint.clip_frames,
        norm_mean=checkpoint.norm_mean,
        norm_std=checkpoint.norm_std,
        batch_size=batch_size,
        tta=tta,
    )
    return softmax(logits)
