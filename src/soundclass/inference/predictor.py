"""Clip-level predictions from cached features, doing only each clip's own work.

Vector models (``(B, n_features)``) see each clip once.  Sequence models
(``(B, n_features, T)``) are trained on windows of ``clip_frames`` frames:

- a clip of at least ``clip_frames`` frames is cut into windows of that length
  that together cover the whole clip (evenly spaced, overlapping when needed,
  :func:`window_starts`); its logits are the mean of its windows' logits.
  With ``tta=k`` it gets ``k`` times as many, shifted, windows;
- a shorter clip is scored as the model was trained: a model trained on
  length-bucketed batches (``bucket=True``: every clip padded only to its
  batch's longest) scores it whole, at its own length, never padded to
  ``clip_frames`` (that only multiplies the work), except up to the model's
  minimum input ``min_frames`` (centred, see below); a model trained with
  every clip padded to the window (``bucket=False``, chosen only when that
  padding is under a third of the input) scores it padded to one centred
  window (``tta`` placements), since whole-clip scores differ from what it
  learnt (speaker-held-out FSDD, ``lucas``: 0.936 whole against 0.960 padded,
  same model).  :func:`pads_short_clips` tells which; ``pad_to_window``
  overrides it.

Windows and whole clips are sorted by length and batched with pieces of the
same length (so padding never enters a batch and a batch gives the same
result as its pieces one by one); results come back in input order.  Clips
are read one at a time, so features still in the cache
(:class:`~soundclass.extraction.stored.StoredFeatures`) are each read once
and never all held.

Standardization (``(x - mean) / std`` per feature row) is applied per batch;
padded frames take each row's minimum over the clip (the silence level of a
dB feature), exactly as :func:`soundclass.dsp.augment.crop_or_pad` pads
training windows.  The torch forward runs under ``torch.inference_mode`` with
``torch.set_num_threads(available_cores())`` (features are computed before,
by the extraction pool, so the two never compete for cores).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from soundclass.dsp.augment import crop_or_pad
from soundclass.errors import ParameterError, check_positive_int
from soundclass.extraction.stored import StoredFeatures, feature_shapes
from soundclass.inference.calibration import softmax

__all__ = [
    "pads_short_clips",
    "window_padding",
    "window_starts",
    "standardize",
    "plan_pieces",
    "predict_logits",
    "predict_proba",
    "cut_window",
    "available_cores",
    "torch_threads",
    "TorchLogits",
]


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


def cut_window(x: np.ndarray, start: int, length: int) -> np.ndarray:
    """``x[:, start:start + length]``, padded with each row's minimum where it leaves the clip.

    ``x`` [shape=(n_features, t)]; returns [shape=(n_features, length)].

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


def _as_list(features: Any, input_kind: str) -> tuple[Sequence[np.ndarray], list[tuple[int, ...]]]:
    """The clips (a :class:`StoredFeatures` stays unread) and their checked shapes."""
    want = 1 if input_kind == "vector" else 2
    if isinstance(features, StoredFeatures):
        items = features
    elif isinstance(features, np.ndarray) and features.ndim == want + 1:
        items = list(features)
    elif isinstance(features, Sequence) or isinstance(features, np.ndarray):
        items = [np.asarray(f) for f in features]
    else:
        raise ParameterError(f"features must be a sequence of arrays, got {type(features).__name__}")
    shapes = feature_shapes(items)
    for i, shape in enumerate(shapes):
        if shape is None or len(shape) != want:
            kind = "(n_features,)" if want == 1 else "(n_features, t)"
            raise ParameterError(
                f"features[{i}] has shape {shape}; {input_kind} models take {kind}"
            )
        if want == 2 and shape[1] == 0:
            raise ParameterError(f"features[{i}] has no frames (shape {shape})")
    rows = {shape[0] for shape in shapes}
    if len(rows) > 1:
        raise ParameterError(f"features have different numbers of rows: {sorted(rows)}")
    return items, shapes


def available_cores() -> int:
    """CPUs this process may run on (``os.sched_getaffinity``), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


@contextmanager
def torch_threads(n: int | None = None) -> Iterator[int]:
    """Run torch with ``n`` intra-op threads (default :func:`available_cores`), then restore."""
    n = available_cores() if n is None else check_positive_int("n", n)
    before = torch.get_num_threads()
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class TorchLogits:
    """``(B, n_features[, T])`` float32 array -> ``(B, n_classes)`` logits of a torch model.

    Parameters
    ----------
    model : torch.nn.Module
        Put in eval mode; run under ``torch.inference_mode``.
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        p = next(model.parameters(), None)
        self.device = torch.device("cpu") if p is None else p.device
        self.min_frames = max(int(getattr(model, "min_frames", 1)), 1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        if out.ndim != 2 or out.shape[0] != batch.shape[0]:
            raise ParameterError(f"model returned shape {tuple(out.shape)} for a batch of {batch.shape[0]}")
        return out.float().cpu().numpy()


def _runner(model: Any) -> Any:
    """A ``batch -> logits`` callable with ``min_frames``: torch models get :class:`TorchLogits`."""
    if isinstance(model, torch.nn.Module):
        return TorchLogits(model)
    if callable(model):
        return model
    raise ParameterError(f"model must be a torch.nn.Module or a logits callable, got {type(model).__name__}")


def _standardize_batch(batch: np.ndarray, mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    if mean is None or std is None:
        return batch
    if batch.shape[1] != mean.shape[0]:
        raise ParameterError(
            f"feature has {batch.shape[1]} rows but the standardization stats have {mean.shape[0]}"
        )
    if batch.ndim == 3:
        return (batch - mean[:, None]) / std[:, None]
    return (batch - mean) / std


def pads_short_clips(checkpoint: Any) -> bool:
    """Whether clips shorter than the window are padded to it for ``checkpoint`` (see the module text).

    :func:`window_padding` of the checkpoint's input kind, window and
    ``train_config['bucket']`` (False also when the checkpoint does not say).
    """
    config = getattr(checkpoint, "train_config", None) or {}
    bucket = config.get("bucket") if isinstance(config, dict) else getattr(config, "bucket", None)
    return window_padding(input_kind=checkpoint.input, clip_frames=checkpoint.clip_frames, bucket=bucket)


def window_padding(*, input_kind: str, clip_frames: int | None, bucket: bool | None) -> bool:
    """The rule of :func:`pads_short_clips`: a sequence model with a window whose training
    padded every clip to it (``bucket is False``) scores short clips padded to one window."""
    return input_kind == "sequence" and clip_frames is not None and bucket is False


def plan_pieces(
    lengths: Sequence[int],
    *,
    clip_frames: int | None,
    tta: int = 1,
    min_frames: int = 1,
    pad_to_window: bool = False,
) -> list[tuple[int, int, int]]:
    """What the model sees of every clip: ``(clip, start, length)`` pieces.

    Parameters
    ----------
    lengths : sequence of int
        Frames of each clip.
    clip_frames : int or None
        Window length; ``None`` scores every clip whole.
    tta : int
        Window multiplier for clips of at least ``clip_frames`` frames.
    min_frames : int
        Smallest input the model takes: shorter pieces are padded to it, centred.
    pad_to_window : bool
        Pad short clips to ``clip_frames`` (``tta`` placements) instead of
        scoring them at their own length.

    Returns
    -------
    list of (int, int, int)
        ``start`` may be negative (the piece begins before the clip and is
        padded); ``length`` is the piece's frames.
    """
    pieces = []
    for i, n in enumerate(lengths):
        n = int(n)
        if clip_frames is not None and (n >= clip_frames or pad_to_window):
            length = max(clip_frames, min_frames)
            pieces += [(i, int(s), length) for s in window_starts(n, length, tta=tta)]
        else:
            length = max(n, min_frames)
            pieces.append((i, -((length - n) // 2), length))
    return pieces


def predict_logits(
    model: Any,
    features: Any,
    *,
    input_kind: str,
    clip_frames: int | None,
    norm_mean: np.ndarray | None = None,
    norm_std: np.ndarray | None = None,
    batch_size: int = 32,
    tta: int = 1,
    pad_to_window: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Clip-level logits of a model on cached features.

    Parameters
    ----------
    model : torch.nn.Module or callable
        A torch model (eval mode, ``torch.inference_mode``), or a callable
        ``batch -> logits`` taking float32 ``(B, n_features[, T])`` and
        returning ``(B, n_classes)`` (e.g. an onnxruntime backend of
        :mod:`soundclass.inference.backends`); its ``min_frames`` attribute,
        if any, is the shortest input it takes.
    features : sequence of np.ndarray, or StoredFeatures
        ``N`` clips: ``(n_features,)`` each for ``input_kind='vector'``,
        ``(n_features, t_i)`` each (lengths may differ) for ``'sequence'``;
        or one stacked array.  A
        :class:`~soundclass.extraction.stored.StoredFeatures` is read one
        clip at a time (each once), so memory is bounded by the batch.
    input_kind : {'sequence', 'vector'}
    clip_frames : int or None
        Window length of sequence models; ``None`` feeds each clip whole.
    norm_mean, norm_std : np.ndarray [shape=(n_features,)], optional
        Standardization statistics of the training set.
    batch_size : int
        Pieces (windows or whole clips) per forward pass.
    tta : int
        Test-time augmentation: ``tta`` times as many shifted windows per clip
        of at least ``clip_frames`` frames (vector models ignore it).
    pad_to_window : bool
        Pad clips shorter than ``clip_frames`` to one window (``tta``
        placements), as a model trained on windows padded to ``clip_frames``
        saw them; default: score them at their own length.
    threads : int or None
        Torch intra-op threads during the forward passes (default:
        :func:`available_cores`); the previous setting is restored.

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
    items, shapes = _as_list(features, input_kind)
    if not shapes:
        raise ParameterError("features is empty: nothing to predict")
    mean = None if norm_mean is None or norm_std is None else np.asarray(norm_mean, dtype=np.float32)
    std = None if mean is None else np.asarray(norm_std, dtype=np.float32)
    run = _runner(model)
    with torch_threads(threads):
        if input_kind == "vector":
            outs = []
            for b in range(0, len(items), batch_size):
                batch = np.stack([items[i] for i in range(b, min(b + batch_size, len(items)))])
                batch = batch.astype(np.float32, copy=False)
                outs.append(_checked(run(_standardize_batch(batch, mean, std)), len(batch)))
            return np.concatenate(outs).astype(np.float32)
        pieces = plan_pieces(
            [shape[1] for shape in shapes], clip_frames=clip_frames, tta=tta,
            min_frames=max(int(getattr(run, "min_frames", 1)), 1), pad_to_window=pad_to_window,
        )
        return _pieces_logits(run, items, shapes[0][0], pieces, mean, std, batch_size)


def _checked(logits: np.ndarray, n: int) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != n:
        raise ParameterError(f"model returned shape {logits.shape} for a batch of {n}")
    return logits


def _pieces_logits(run, items, n_rows, pieces, mean, std, batch_size) -> np.ndarray:
    order = sorted(range(len(pieces)), key=lambda k: pieces[k][2])  # stable: by length
    owners = np.array([pieces[k][0] for k in order], dtype=np.int64)
    sums: np.ndarray | None = None
    # the pieces of one clip have one length, so they are consecutive in ``order``: holding the
    # last clip read means each one is read once (a StoredFeatures reads it from disk)
    held: list[Any] = [-1, None]

    def clip(i: int) -> np.ndarray:
        if held[0] != i:
            held[:] = [i, None]  # drop the previous clip before reading the next
            held[1] = np.asarray(items[i])
        return held[1]

    start = 0
    while start < len(order):
        length = pieces[order[start]][2]
        stop = start + 1
        while stop < len(order) and stop - start < batch_size and pieces[order[stop]][2] == length:
            stop += 1
        chunk = [pieces[k] for k in order[start:stop]]
        batch = np.empty((len(chunk), n_rows, length), dtype=np.float32)  # (B, n_features, length)
        for row, (i, s, n) in enumerate(chunk):  # copied in one by one: no window keeps its clip alive
            batch[row] = cut_window(clip(i), s, n)
        batch = _standardize_batch(batch, mean, std)
        logits = _checked(run(batch), len(chunk))  # (B, n_classes)
        if sums is None:
            sums = np.zeros((len(items), logits.shape[1]), dtype=np.float64)
        np.add.at(sums, owners[start:stop], logits)
        start = stop
    counts = np.bincount(owners, minlength=len(items)).astype(np.float64)
    return (sums / counts[:, None]).astype(np.float32)


def predict_proba(
    checkpoint: Any,
    features: Any,
    *,
    tta: int = 1,
    batch_size: int = 32,
    model: Any = None,
    pad_to_window: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Class probabilities of a loaded :class:`~soundclass.checkpoint.format.Checkpoint`.

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`soundclass.checkpoint.format.load_checkpoint`.
    features : sequence of np.ndarray
        Features computed with ``checkpoint.feature``.
    tta, batch_size, threads
        See :func:`predict_logits`.
    pad_to_window : bool or None
        See :func:`predict_logits`; ``None``: as the checkpoint was trained
        (:func:`pads_short_clips`).
    model : torch.nn.Module or callable, optional
        What computes the logits (default ``checkpoint.model``), e.g. the
        ``logits`` of an onnxruntime backend.

    Returns
    -------
    np.ndarray [shape=(N, n_classes)], float32
        Softmax of the mean window logits; columns follow ``checkpoint.classes``.
    """
    logits = predict_logits(
        checkpoint.model if model is None else model,
        features,
        input_kind=checkpoint.input,
        clip_frames=checkpoint.clip_frames,
        norm_mean=checkpoint.norm_mean,
        norm_std=checkpoint.norm_std,
        batch_size=batch_size,
        tta=tta,
        pad_to_window=pads_short_clips(checkpoint) if pad_to_window is None else bool(pad_to_window),
        threads=threads,
    )
    return softmax(logits)
