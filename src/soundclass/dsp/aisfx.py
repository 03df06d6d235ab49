"""The aiSFX front end: peak-normalised 44.1 kHz audio -> compressed mel blocks.

The recipe of the pretrained aiSFX network (Ma and Lerch, ISMIR 2022), with
librosa's names:

1. mono at ``sr=44100`` (other rates are resampled with soxr HQ);
2. the waveform divided by its absolute peak (by 1 if silent);
3. ``melspectrogram(n_fft=2048, win_length=2048, hop_length=1024, n_mels=96,
   fmin=0, fmax=22050, htk=True, norm=1.0, power=2, center=True)``, where
   ``norm=1.0`` (librosa's meaning) scales each triangular filter to unit L1 norm;
4. ``log10(1e4 * S + 1) / 9.457798957824707`` (the paper's cross-dataset maximum);
5. frames as rows, cut into blocks of 100 frames (~2.3 s) with a hop of 50;
   an incomplete last block is dropped, a clip shorter than one block is
   zero-padded to one block.

:func:`aisfx_logmel` gives steps 1-4 as ``(n_mels, t)`` (soundclass' feature
layout), :func:`aisfx_blocks` the network input ``(n_blocks, 100, 96)``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from soundclass.audio import check_audio, resample
from soundclass.dsp.features import melspectrogram
from soundclass.dsp.filters import mel as mel_filter
from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "AISFX_SR",
    "AISFX_N_FFT",
    "AISFX_HOP_LENGTH",
    "AISFX_N_MELS",
    "AISFX_FMAX",
    "AISFX_LOG_MAX",
    "BLOCK_FRAMES",
    "BLOCK_HOP",
    "l1_gain",
    "aisfx_logmel",
    "frames_to_blocks",
    "aisfx_blocks",
]

AISFX_SR = 44100
AISFX_N_FFT = 2048
AISFX_HOP_LENGTH = 1024
AISFX_N_MELS = 96
AISFX_FMAX = 22050.0
#: Maximum of ``log10(1e4 * S + 1)`` over the paper's training sets; divides the log-mel.
AISFX_LOG_MAX = 9.457798957824707
BLOCK_FRAMES = 100
BLOCK_HOP = 50


@lru_cache(maxsize=4)
def l1_gain(dtype_name: str) -> np.ndarray:
    """``1 / sum(filter)`` per mel filter: turns the unnormalised bank into librosa's ``norm=1.0``.

    Returns
    -------
    np.ndarray [shape=(96, 1)], read-only, of dtype ``dtype_name``
    """
    basis = mel_filter(sr=AISFX_SR, n_fft=AISFX_N_FFT, n_mels=AISFX_N_MELS, fmin=0.0,
                       fmax=AISFX_FMAX, htk=True, norm=None)  # (n_mels, 1 + n_fft // 2)
    l1 = np.abs(basis).sum(axis=1, dtype=np.float64)
    gain = np.where(l1 > np.finfo(np.float32).tiny, 1.0 / np.maximum(l1, 1e-300), 1.0)
    gain = gain.astype(dtype_name)[:, np.newaxis]  # (n_mels, 1)
    gain.setflags(write=False)
    return gain


def aisfx_logmel(y: np.ndarray, *, sr: float = AISFX_SR) -> np.ndarray:
    """Steps 1-4 of the aiSFX front end: the normalised, compressed mel spectrogram.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal at ``sr``.
    sr : float
        Its sample rate; resampled to 44100 Hz (soxr HQ) when different.

    Returns
    -------
    np.ndarray [shape=(96, t)], float32
        ``log10(1e4 * S + 1) / 9.457798957824707`` with ``t = 1 + n // 1024`` at 44.1 kHz.
    """
    check_audio(y, max_ndim=1)
    y = np.asarray(y, dtype=np.float32)
    if sr != AISFX_SR:
        y = resample(y, orig_sr=sr, target_sr=AISFX_SR)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    y = y / (peak if peak > 0 else 1.0)
    S = melspectrogram(
        y=y, sr=AISFX_SR, n_fft=AISFX_N_FFT, hop_length=AISFX_HOP_LENGTH,
        win_length=AISFX_N_FFT, center=True, power=2.0, n_mels=AISFX_N_MELS, fmin=0.0,
        fmax=AISFX_FMAX, htk=True, norm=None,
    )  # (n_mels, t), filters not yet normalised
    S = S * l1_gain(S.dtype.name)  # norm=1.0: unit L1 per filter
    return (np.log10(1e4 * S + 1.0) / AISFX_LOG_MAX).astype(np.float32)


def frames_to_blocks(
    S: np.ndarray, *, block_frames: int = BLOCK_FRAMES, block_hop: int = BLOCK_HOP
) -> np.ndarray:
    """Cut a ``(n_mels, t)`` feature into overlapping time-major blocks.

    Parameters
    ----------
    S : np.ndarray [shape=(n_mels, t)]
    block_frames, block_hop : int
        Block length and hop in frames.

    Returns
    -------
    np.ndarray [shape=(n_blocks, block_frames, n_mels)]
        ``n_blocks = 1 + (t - block_frames) // block_hop`` (an incomplete last
        block is dropped); a feature shorter than one block is zero-padded to one.
    """
    block_frames = check_positive_int("block_frames", block_frames)
    block_hop = check_positive_int("block_hop", block_hop)
    S = np.asarray(S)
    if S.ndim != 2:
        raise ParameterError(f"S must have shape (n_mels, t), got shape={S.shape}")
    frames = S.T  # (t, n_mels)
    t = frames.shape[0]
    if t < block_frames:
        frames = np.concatenate([frames, np.zeros((block_frames - t, S.shape[0]), S.dtype)])
        t = block_frames
    n_blocks = 1 + (t - block_frames) // block_hop
    starts = block_hop * np.arange(n_blocks)
    idx = starts[:, None] + np.arange(block_frames)[None, :]  # (n_blocks, block_frames)
    return np.ascontiguousarray(frames[idx])  # (n_blocks, block_frames, n_mels)


def aisfx_blocks(y: np.ndarray, *, sr: float = AISFX_SR) -> np.ndarray:
    """The aiSFX network input of a clip.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal at ``sr`` (resampled to 44100 Hz when different).
    sr : float

    Returns
    -------
    np.ndarray [shape=(n_blocks, 100, 96)], float32
        :func:`frames_to_blocks` of :func:`aisfx_logmel`.
    """
    return frames_to_blocks(aisfx_logmel(y, sr=sr))
