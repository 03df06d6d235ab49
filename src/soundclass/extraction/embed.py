"""Clip embeddings of a pretrained backbone for your own tools (``soundclass embed``).

:data:`BACKBONES`: ``aisfx`` (1024 values) or ``whisper`` (3584 values).  The
embeddings are the backbone's cached feature (:func:`soundclass.extraction.cache.get_features`:
parallel, resumable, one bad file never stops the run): for ``aisfx`` the block
embeddings ``FeatureConfig(kind='aisfx')``, pooled per clip to the mean and
the max over its blocks (:func:`soundclass.models.aisfx.pool_embeddings`); for
``whisper`` the clip embedding ``FeatureConfig(kind='whisper')``
(:func:`soundclass.models.whisper.whisper_vector`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from soundclass.errors import ParameterError
from soundclass.extraction.cache import get_features
from soundclass.models import aisfx, whisper
from soundclass.util.atomic import atomic_open
from soundclass.util.csvfile import write_csv
from soundclass.util.failures import Failure

__all__ = ["BACKBONES", "EMBED_FORMATS", "embed_paths", "write_embeddings"]

EMBED_FORMATS = (".csv", ".npz")
#: Backbone -> (its cached feature, feature -> clip vector, loads and checks its weights).
BACKBONES = {
    "aisfx": (aisfx.AISFX_PROBE_SPEC.feature, lambda b: aisfx.pool_embeddings(b.T),
              aisfx.pretrained_embedding_net),
    "whisper": (whisper.WHISPER_PROBE_SPEC.feature, lambda e: np.ascontiguousarray(e[:, 0]),
                whisper.pretrained_encoder),
}


def embed_paths(
    paths: Sequence[str | os.PathLike],
    *,
    backbone: str = "aisfx",
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray | None], list[Failure]]:
    """Clip embeddings of audio files by a pretrained backbone.

    Parameters
    ----------
    paths : sequence of path [shape=(n,)]
    backbone : {'aisfx', 'whisper'}
        ``aisfx``: mean and max of the aiSFX block embeddings (1024 values);
        ``whisper``: the Whisper-base clip embedding (3584 values).
    cache_dir, n_jobs, executor, progress
        As for :func:`soundclass.extraction.cache.get_features`.

    Returns
    -------
    embeddings : list of (np.ndarray [shape=(d,)] float32 or None) [shape=(n,)]
        In input order; ``None`` for a file that failed.
    failures : list of Failure
        ``(path, reason)`` of each failed file.

    Raises
    ------
    ParameterError
        An unknown backbone.
    CheckpointError
        The backbone's weights are not installed or differ (checked once, before any file).
    """
    if backbone not in BACKBONES:
        raise ParameterError(f"backbone={backbone!r} must be one of {tuple(BACKBONES)}")
    feature, to_vector, load_weights = BACKBONES[backbone]
    load_weights()  # a missing or different install fails once, before any file
    features, failures = get_features(paths, feature, cache_dir=cache_dir, n_jobs=n_jobs,
                                      executor=executor, progress=progress)
    return [None if f is None else to_vector(f) for f in features], failures


def write_embeddings(
    out: str | os.PathLike,
    paths: Sequence[str],
    labels: Sequence[str | None],
    embeddings: np.ndarray,
) -> Path:
    """Write one row per clip to a ``.csv`` or ``.npz`` file (atomically).

    Parameters
    ----------
    out : path
        ``.csv``: columns ``path, label, e0 ... e{d-1}`` (an empty label when
        unlabelled; :func:`soundclass.util.csvfile.write_csv`, so any file name
        round-trips); ``.npz``: arrays ``path`` (str), ``label`` (str, ``''``
        when unlabelled) and ``embedding`` [shape=(n_clips, d)] float32.
    paths, labels : sequence [shape=(n_clips,)]
    embeddings : np.ndarray [shape=(n_clips, d)]

    Returns
    -------
    pathlib.Path
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in EMBED_FORMATS:
        raise ParameterError(f"{out}: the output must end in .csv or .npz")
    if len(labels) != len(paths):
        raise ParameterError(f"{len(labels)} labels for {len(paths)} paths")
    E = np.asarray(embeddings, dtype=np.float32).reshape(len(paths), -1)
    labels = ["" if lab is None else str(lab) for lab in labels]
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        return write_csv(out, ["path", "label", *(f"e{i}" for i in range(E.shape[1]))],
                         ([p, lab, *(repr(float(v)) for v in row)] for p, lab, row in zip(paths, labels, E, strict=True)))
    with atomic_open(out, "wb") as fh:
        np.savez(fh, path=np.array(paths, dtype=str), label=np.array(labels, dtype=str), embedding=E)
    return out
