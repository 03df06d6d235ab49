"""Features of many files, fast: the path from audio files to feature matrices.

:func:`compute_feature` turns a mono signal into the feature a
:class:`~soundclass.config.FeatureConfig` describes, equal to the librosa
composition (``melspectrogram`` -> ``power_to_db`` -> ``mfcc`` -> ``delta``).
:func:`extract_file` decodes and resamples a file (:func:`soundclass.audio.load`:
int16 reads with an exact downmix, soxr HQ) and computes it;
:func:`extract_many` does that for a list of files on a pool of workers,
returning one :class:`ExtractResult` per path, in input order, with failures
recorded instead of raised.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from soundclass.audio import check_audio, load
from soundclass.config import FeatureConfig
from soundclass.dsp.aisfx import aisfx_logmel
from soundclass.dsp.features import delta, melspectrogram, mfcc, power_to_db
from soundclass.errors import AudioDecodeError, ParameterError, check_positive_int
from soundclass.models.aisfx import aisfx_embedding
from soundclass.models.backbone_runtime import feature_backbones, prepare_backbone
from soundclass.models.fusion import fusion_embedding
from soundclass.models.whisper import whisper_embedding, whisper_logmel
from soundclass.util.executors import preload_in_workers
from soundclass.util.failures import CONTENT, TRANSIENT, Failure, describe, failure_kind
from soundclass.util.pool import run_chunked
from soundclass.util.progress import progress_bar

__all__ = [
    "DELTA_WIDTH",
    "FEATURE_CODE_VERSION",
    "ExtractResult", "compute_feature", "extract_file", "extract_many", "features_desc", "prepare_workers"]

preload_in_workers(__name__)  # its functions run in pool workers

#: Version of the feature computation itself. Bump it whenever a change to the
#: code (not to a FeatureConfig) changes any computed value: feature caches are
#: keyed by it, so stale entries are never reused.
FEATURE_CODE_VERSION = 1

#: Frames in the local fit of the deltas (``librosa.feature.delta`` default).
DELTA_WIDTH = 9


@dataclass(frozen=True)
class ExtractResult:
    """The outcome for one file.

    Attributes
    ----------
    path : str
    feature : np.ndarray or None
        float32, ``(n_features, t)`` or ``(n_features,)``; ``None`` on failure.
    error : str or None
        Why the file failed, in words (the path itself is in ``path``); ``None`` on success.
    kind : str
        What caused a failure (:func:`soundclass.util.failures.failure_kind`):
        ``"content"`` (the bytes), ``"access"`` (permission, name...) or
        ``"transient"`` (memory, a lost worker); only ``"content"`` failures
        may be remembered against the file's content.
    """

    path: str
    feature: np.ndarray | None
    error: str | None = None
    kind: str = CONTENT

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def failure(self) -> Failure | None:
        """The :class:`~soundclass.util.failures.Failure` record, ``None`` on success."""
        return None if self.error is None else Failure(self.path, self.error)


def compute_feature(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The feature ``config`` describes, computed from a mono signal.

    Parameters
    ----------
    y : np.ndarray [shape=(n,)], floating point
        Mono signal at ``config.sr``.
    config : FeatureConfig

    Returns
    -------
    np.ndarray [shape=(n_features, t) or (n_features,)], float32
        ``n_features = config.n_features``; the second form when ``pooling='mean'``.

    Raises
    ------
    ParameterError
        ``y`` is not 1-D, or deltas are asked for a clip shorter than
        ``DELTA_WIDTH`` frames (as librosa does).
    """
    check_audio(y, max_ndim=1)
    if config.kind == "aisfx-logmel":  # the pretrained network's own front end
        return np.ascontiguousarray(aisfx_logmel(y, sr=config.sr), dtype=np.float32)
    if config.kind == "aisfx":  # its frozen block embeddings (512, n_blocks)
        return np.ascontiguousarray(aisfx_embedding(y, config.sr), dtype=np.float32)
    if config.kind == "whisper-logmel":  # the Whisper encoder's log-mel (80, t)
        return np.ascontiguousarray(whisper_logmel(y, sr=config.sr), dtype=np.float32)
    if config.kind == "whisper":  # its frozen clip embedding (3584, 1)
        return whisper_embedding(y, config.sr)
    if config.kind == "fusion":  # aiSFX and Whisper clip embeddings (4608, 1)
        return fusion_embedding(y, config.sr)
    S = melspectrogram(
        y=y, sr=config.sr, n_fft=config.n_fft, hop_length=config.hop_length,
        win_length=config.win_length, window=config.window, center=config.center,
        pad_mode=config.pad_mode, power=config.power, n_mels=config.n_mels, fmin=config.fmin,
        fmax=config.fmax, htk=config.htk, norm=config.norm,
    )  # (n_mels, t)
    if config.kind == "logmel":
        S = power_to_db(S, top_db=config.top_db)
    elif config.kind == "mfcc":
        S = mfcc(S=power_to_db(S, top_db=config.top_db), n_mfcc=config.n_mfcc)  # (n_mfcc, t)
    if config.deltas:
        n_frames = S.shape[-1]
        if n_frames < DELTA_WIDTH:
            raise ParameterError(
                f"deltas need at least {DELTA_WIDTH} frames, got {n_frames} "
                f"({len(y) / config.sr:.3f} s at sr={config.sr}, hop_length={config.hop_length}); "
                "use a longer clip or a smaller hop_length"
            )
        parts = [S] + [delta(S, width=DELTA_WIDTH, order=k) for k in range(1, config.deltas + 1)]
        S = np.concatenate(parts, axis=0)  # (n_features, t)
    if config.pooling == "mean":
        S = S.mean(axis=-1)  # (n_features,)
    return np.ascontiguousarray(S, dtype=np.float32)


def prepare_workers(config: FeatureConfig) -> None:
    """Build once, before a pool starts, what every worker would otherwise build on its first file.

    For a kind computed by frozen backbones (``aisfx``, ``whisper``, ``fusion``):
    their onnxruntime graphs, exported into the user cache
    (:func:`soundclass.models.backbone_runtime.prepare_backbone`), so that
    workers only load them (and never run torch to export them, all at once).
    """
    for found in feature_backbones(config.kind):
        prepare_backbone(found.backbone)


def extract_file(path: str | os.PathLike, config: FeatureConfig) -> np.ndarray:
    """Decode, downmix, resample (soxr HQ) to ``config.sr`` and compute the feature.

    At most ``config.max_duration`` seconds are read.

    Parameters
    ----------
    path : str or os.PathLike
    config : FeatureConfig

    Returns
    -------
    np.ndarray [shape=(n_features, t) or (n_features,)], float32

    Raises
    ------
    AudioDecodeError
        The file cannot be decoded (the message names the file and the reason).
    ParameterError
        The clip is too short for the requested deltas.
    """
    y, _ = load(path, sr=config.sr, mono=True, duration=config.max_duration)
    feature = compute_feature(y, config)
    if not np.isfinite(feature).all():  # e.g. a transform overflowed: never a silent label later
        raise AudioDecodeError(os.fspath(path), "its features are not finite (NaN/Inf after the "
                               "spectrogram); the audio is probably corrupt or has extreme values")
    return feature


def _extract_one(path: str, config: FeatureConfig) -> ExtractResult:
    try:
        return ExtractResult(path, extract_file(path, config))
    except MemoryError:
        return ExtractResult(path, None, "out of memory while decoding or computing features",
                             kind=TRANSIENT)
    except Exception as exc:  # noqa: BLE001 - one bad file must never stop a batch
        return ExtractResult(path, None, describe(exc), kind=failure_kind(exc, path))


def _lost(path: str, reason: str, kind: str) -> ExtractResult:
    return ExtractResult(path, None, reason, kind=kind)


def features_desc(config: FeatureConfig) -> str:
    """The progress label of computing ``config``'s features: ``'features (logmel)'``."""
    return f"features ({config.kind})"


def extract_many(
    paths: Iterable[str | os.PathLike],
    config: FeatureConfig,
    *,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    chunksize: int | None = None,
    desc: str | None = None,
) -> list[ExtractResult]:
    """Features of many files, in input order, never raising for a bad file.

    Parameters
    ----------
    paths : iterable of str or os.PathLike
    config : FeatureConfig
    n_jobs : int or None
        Worker processes when no ``executor`` is given (``None``: all CPUs;
        ``1``: in this process, no pool).
    executor : concurrent.futures.Executor or None
        Where to run (see :func:`soundclass.util.executors.make_executor`); it is
        not shut down here.
    progress : bool
        Show a progress bar over the files (:func:`soundclass.util.progress.progress_bar`).
    chunksize : int or None
        Files per task (``None``: about 8 tasks per worker, at most 32 files each).
    desc : str, optional
        The progress bar's label (default :func:`features_desc`; e.g. ``'features (cnn)'``).

    Returns
    -------
    list of ExtractResult
        ``results[i].path == str(paths[i])``; failed files have ``feature=None``
        and ``error`` set.  A worker that dies (decoder crash, out of memory)
        fails only the file it was working on: the files of its chunk are
        retried one by one (:func:`soundclass.util.pool.run_chunked`).
    """
    paths = [os.fspath(p) for p in paths]
    if not isinstance(config, FeatureConfig):
        raise ParameterError(f"config must be a FeatureConfig, got {type(config).__name__}")
    check_positive_int("chunksize", chunksize, allow_none=True)
    if not paths:
        return []
    if executor is not None or n_jobs != 1:
        prepare_workers(config)
    bar = progress_bar(len(paths), desc=desc or features_desc(config), enabled=progress)
    try:
        return run_chunked(
            functools.partial(_extract_one, config=config), paths, on_failure=_lost,
            executor=executor, n_jobs=n_jobs, chunksize=chunksize,
            progress=bar.update,
        )
    finally:
        bar.close()
