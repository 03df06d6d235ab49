"""Training-time augmentation with explicit random generators.

Each transform validates its arguments, draws its random parameters from the
generator it is given (``numpy.random.Generator`` for numpy features,
``torch.Generator`` for torch batches) and applies them; nothing touches a
global RNG, so the same seed gives the same result.  Degenerate ranges
(``freq_width=0``, ``alpha=0``, ``max_warp=0``, ``max_stretch=0``) turn a transform off exactly.

- :func:`crop_or_pad` fixes the length of one ``(n_features, T)`` feature;
- :func:`spec_augment` masks frequency rows and time columns of a batch;
- :func:`freq_warp` stretches/compresses the frequency axis of each example
  (VTLP-like, a speaker's vocal-tract length);
- :func:`time_stretch` stretches/compresses the time axis of each example
  (speaking rate), keeping the number of frames;
- :func:`mixup` blends a batch with a permutation of itself;
  :func:`mix_targets` turns its result into soft targets.
"""

from __future__ import annotations

import numpy as np
import torch

from soundclass.errors import (
    ParameterError,
    check_fraction,
    check_non_negative_int,
    check_positive_int,
    check_range,
)

__all__ = ["crop_or_pad", "spec_augment", "freq_warp", "time_stretch", "mixup", "mix_targets"]

_CROP_MODES = ("random", "center")


def crop_or_pad(
    x: np.ndarray,
    length: int,
    *,
    mode: str = "random",
    rng: np.random.Generator | None = None,
    pad_value: float | None = None,
) -> np.ndarray:
    """Crop or pad a feature matrix along time to exactly ``length`` frames.

    Parameters
    ----------
    x : np.ndarray [shape=(n_features, T)]
        One clip's feature.
    length : int > 0
        Frames wanted.
    mode : {'random', 'center'}
        ``'random'``: a random window (crop) or a random placement (pad),
        drawn from ``rng``; ``'center'``: the middle window / centred placement.
    rng : numpy.random.Generator
        Required when ``mode='random'``.
    pad_value : float or None
        Fill value; ``None`` pads each row with its own minimum, which is the
        silence level of a dB feature.

    Returns
    -------
    np.ndarray [shape=(n_features, length)]
        Same dtype as ``x``; ``x`` itself is never modified.
    """
    check_positive_int("length", length)
    if mode not in _CROP_MODES:
        raise ParameterError(f"mode={mode!r} must be one of {_CROP_MODES}")
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ParameterError(f"x must have shape (n_features, T) with T > 0, got {x.shape}")
    if mode == "random" and not isinstance(rng, np.random.Generator):
        raise ParameterError("mode='random' needs rng=numpy.random.Generator")
    n_frames = x.shape[1]
    slack = abs(n_frames - length)
    offset = int(rng.integers(0, slack + 1)) if mode == "random" else slack // 2
    if n_frames >= length:
        return x[:, offset : offset + length].copy()
    if pad_value is None:
        fill = x.min(axis=1, keepdims=True)  # (n_features, 1) per-row silence level
    else:
        fill = np.full((x.shape[0], 1), pad_value, dtype=x.dtype)
    out = np.broadcast_to(fill, (x.shape[0], length)).astype(x.dtype, copy=True)
    out[:, offset : offset + n_frames] = x
    return out


def _mask_starts(
    size: int, width: int, count: int, batch: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Widths in ``[0, width]`` and starts so that each mask fits in ``size``."""
    width = min(width, size)
    widths = torch.randint(0, width + 1, (batch, count), generator=generator)
    starts = (torch.rand(batch, count, generator=generator) * (size - widths + 1)).long()
    return starts, widths


def _mask(size: int, starts: torch.Tensor, widths: torch.Tensor) -> torch.Tensor:
    """Boolean ``(B, size)``: True inside any of the ``count`` masks of each example."""
    pos = torch.arange(size).view(1, 1, size)  # (1, 1, size)
    inside = (pos >= starts.unsqueeze(-1)) & (pos < (starts + widths).unsqueeze(-1))
    return inside.any(dim=1)  # (B, size)


def spec_augment(
    x: torch.Tensor,
    *,
    generator: torch.Generator,
    freq_masks: int = 2,
    freq_width: int = 8,
    time_masks: int = 2,
    time_width: int = 10,
) -> torch.Tensor:
    """SpecAugment (Park et al. 2019) frequency and time masking of a batch.

    Each example gets ``freq_masks`` bands of ``0..freq_width`` rows and
    ``time_masks`` spans of ``0..time_width`` frames (widths clipped to the
    feature size), filled with that example's mean value.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, F, T)]
        A batch of features.
    generator : torch.Generator
        Source of every random draw.
    freq_masks, freq_width, time_masks, time_width : int >= 0
        Number and maximum width of the masks; 0 disables that kind.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)]
        A new tensor; ``x`` is not modified.
    """
    if not isinstance(generator, torch.Generator):
        raise ParameterError(f"generator={generator!r} must be a torch.Generator")
    for name, value in (
        ("freq_masks", freq_masks), ("freq_width", freq_width),
        ("time_masks", time_masks), ("time_width", time_width),
    ):
        check_non_negative_int(name, value)
    if x.ndim != 3:
        raise ParameterError(f"x must have shape (B, F, T), got {tuple(x.shape)}")
    batch, n_freq, n_time = x.shape
    fill = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1) per-example mean
    masked = torch.zeros(batch, n_freq, n_time, dtype=torch.bool)
    if freq_masks and freq_width:
        starts, widths = _mask_starts(n_freq, freq_width, freq_masks, batch, generator)
        masked |= _mask(n_freq, starts, widths).unsqueeze(2)  # (B, F, 1)
    if time_masks and time_width:
        starts, widths = _mask_starts(n_time, time_width, time_masks, batch, generator)
        masked |= _mask(n_time, starts, widths).unsqueeze(1)  # (B, 1, T)
    return torch.where(masked.to(x.device), fill, x)


def _check_batch(x: torch.Tensor, generator, name: str, value) -> None:
    if not isinstance(generator, torch.Generator):
        raise ParameterError(f"generator={generator!r} must be a torch.Generator")
    check_range(name, value, low=0.0, high=1.0, high_open=True, what="a number in [0, 1)")
    if x.ndim != 3:
        raise ParameterError(f"x must have shape (B, F, T), got {tuple(x.shape)}")


def _factors(batch: int, max_rel: float, generator: torch.Generator) -> torch.Tensor:
    """``(B,)`` factors uniform in ``[1 - max_rel, 1 + max_rel]``."""
    return 1.0 + (2.0 * torch.rand(batch, generator=generator, dtype=torch.float64) - 1.0) * max_rel


def _interp_matrix(src: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, n, size)`` linear-interpolation weights of fractional positions ``src`` ``(B, n)``.

    Row ``j`` holds the hat function ``max(0, 1 - |src_j - k|)`` over ``k``,
    so multiplying by it interpolates; positions outside ``[0, size - 1]``
    are clamped to the edge.
    """
    src = src.clamp(0.0, size - 1.0).unsqueeze(-1)  # (B, n, 1)
    grid = torch.arange(size, dtype=src.dtype)  # (size,)
    return (1.0 - (src - grid).abs()).clamp(min=0.0)


def freq_warp(x: torch.Tensor, *, max_warp: float, generator: torch.Generator) -> torch.Tensor:
    """Random linear warping of the frequency axis of each example (VTLP-like).

    Each example draws ``alpha ~ U[1 - max_warp, 1 + max_warp]``; output row
    ``f`` is the linear interpolation of the input at row ``f / alpha``, so
    ``alpha > 1`` moves content up (stretch), ``alpha < 1`` down (compress).
    Rows that would read beyond the top repeat the top row.  On a mel axis
    this mimics a different vocal-tract length (Jaitly & Hinton 2013).

    Parameters
    ----------
    x : torch.Tensor [shape=(B, F, T)]
        A batch of features (e.g. log-mel).
    max_warp : float in [0, 1)
        Maximum relative warp; ``0`` returns an unchanged copy.
    generator : torch.Generator
        Source of the factors.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)]
        A new tensor of ``x``'s dtype; ``x`` is not modified.
    """
    _check_batch(x, generator, "max_warp", max_warp)
    if max_warp == 0:
        return x.clone()
    batch, n_freq, n_time = x.shape
    alpha = _factors(batch, float(max_warp), generator)  # (B,)
    src = torch.arange(n_freq, dtype=torch.float64).unsqueeze(0) / alpha.unsqueeze(1)  # (B, F)
    weights = _interp_matrix(src, n_freq).to(device=x.device, dtype=x.dtype)  # (B, F, F)
    return torch.bmm(weights, x)


def time_stretch(x: torch.Tensor, *, max_stretch: float, generator: torch.Generator) -> torch.Tensor:
    """Random time stretching of each example around its centre, same number of frames.

    Each example draws ``r ~ U[1 - max_stretch, 1 + max_stretch]``; output
    frame ``t`` is the linear interpolation of the input at
    ``(t - c) / r + c`` with ``c = (T - 1) / 2``.  ``r > 1`` slows down
    (the ends are cropped), ``r < 1`` speeds up (the ends are padded with
    each row's minimum, the silence level of a dB feature).

    Parameters
    ----------
    x : torch.Tensor [shape=(B, F, T)]
        A batch of features.
    max_stretch : float in [0, 1)
        Maximum relative stretch; ``0`` returns an unchanged copy.
    generator : torch.Generator
        Source of the factors.

    Returns
    -------
    torch.Tensor [shape=(B, F, T)]
        A new tensor of ``x``'s dtype; ``x`` is not modified.
    """
    _check_batch(x, generator, "max_stretch", max_stretch)
    if max_stretch == 0:
        return x.clone()
    batch, n_freq, n_time = x.shape
    rate = _factors(batch, float(max_stretch), generator)  # (B,)
    centre = (n_time - 1) / 2.0
    src = (torch.arange(n_time, dtype=torch.float64).unsqueeze(0) - centre) / rate.unsqueeze(1) + centre
    inside = ((src >= 0) & (src <= n_time - 1)).to(x.device).unsqueeze(1)  # (B, 1, T)
    weights = _interp_matrix(src, n_time).to(device=x.device, dtype=x.dtype)  # (B, T_out, T_in)
    stretched = torch.bmm(x, weights.transpose(1, 2))  # (B, F, T)
    fill = x.amin(dim=2, keepdim=True)  # (B, F, 1) per-row silence level
    return torch.where(inside, stretched, fill)


def mixup(
    x: torch.Tensor, y: torch.Tensor, *, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """mixup (Zhang et al. 2018): blend each example with a partner in the batch.

    ``lam ~ Beta(alpha, alpha)`` (one value per batch) and a random
    permutation ``perm`` give ``x_mixed = lam * x + (1 - lam) * x[perm]``.
    Train with ``lam * loss(out, y_a) + (1 - lam) * loss(out, y_b)`` or with
    the soft targets of :func:`mix_targets`.

    Parameters
    ----------
    x : torch.Tensor [shape=(B, ...)]
        Inputs.
    y : torch.Tensor [shape=(B,)] or [shape=(B, n_classes)]
        Class indices or (soft) targets.
    alpha : float >= 0
        Beta concentration; ``0`` disables mixing (``lam=1``, identity permutation).
    generator : torch.Generator
        Source of the permutation and (through a derived seed) of ``lam``.

    Returns
    -------
    x_mixed : torch.Tensor [shape=(B, ...)]
    y_a, y_b : torch.Tensor
        ``y`` and ``y[perm]``.
    lam : float
        Weight of ``y_a``.
    """
    if not isinstance(generator, torch.Generator):
        raise ParameterError(f"generator={generator!r} must be a torch.Generator")
    check_range("alpha", alpha, low=0.0, what="a non-negative number")
    if x.shape[0] != y.shape[0]:
        raise ParameterError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
    if alpha == 0:
        return x.clone(), y, y, 1.0
    # torch's Beta sampler takes no generator: derive a numpy seed from ours.
    seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    x_mixed = lam * x + (1.0 - lam) * x[perm]
    return x_mixed, y, y[perm], lam


def mix_targets(
    y_a: torch.Tensor,
    y_b: torch.Tensor,
    lam: float,
    *,
    n_classes: int,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Soft targets ``lam * onehot(y_a) + (1 - lam) * onehot(y_b)``, optionally smoothed.

    Parameters
    ----------
    y_a, y_b : torch.Tensor [shape=(B,)]
        Class indices from :func:`mixup`.
    lam : float in [0, 1]
    n_classes : int
    label_smoothing : float in [0, 1)
        Mass spread uniformly over all classes (as ``torch.nn.CrossEntropyLoss``).

    Returns
    -------
    torch.Tensor [shape=(B, n_classes)]
        Rows sum to 1.
    """
    check_fraction("lam", lam)
    check_fraction("label_smoothing", label_smoothing, high_open=True)
    one_a = torch.nn.functional.one_hot(y_a.long(), n_classes).float()
    one_b = torch.nn.functional.one_hot(y_b.long(), n_classes).float()
    soft = lam * one_a + (1.0 - lam) * one_b
    return soft * (1.0 - label_smoothing) + label_smoothing / n_classes
