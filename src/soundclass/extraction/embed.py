"""Clip embeddings of the aiSFX network for your own tools (``soundclass embed``).

The block embeddings are the cached feature ``FeatureConfig(kind='aisfx')``
(:func:`soundclass.extraction.cache.get_features`: parallel, resumable, one bad
file never stops the run); each clip is then pooled to one vector, the mean
and the max over its blocks (1024 values, :func:`soundclass.models.aisfx.pool_embeddings`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from pathlib import Path

import numpy as np

from soundclass.errors import ParameterError
from soundclass.extraction.cache import get_features
from soundclass.models.aisfx import AISFX_PROBE_SPEC, pool_embeddings, pretrained_embedding_net
from soundclass.util.atomic import atomic_open
from soundclass.util.csvfile import write_csv
from soundclass.util.failures import Failure

__all__ = ["EMBED_FORMATS", "embed_paths", "write_embeddings"]

EMBED_FORMATS = (".csv", ".npz")


def embed_paths(
    paths: Sequence[str | os.PathLike],
    *,
    cache_dir: str | os.PathLike | None = None,
    n_jobs: int | None = None,
    executor: Executor | None = None,
    progress: bool = False,
) -> tuple[list[np.ndarray | None], list[Failure]]:
    """Clip embeddings (mean and max of the aiSFX block embeddings) of audio files.

    Parameters
    ----------
    paths : sequence of path [shape=(n,)]
    cache_dir, n_jobs, executor, progress
        As for :func:`soundclass.extraction.cache.get_features`.

    Returns
    -------
    embeddings : list of (np.ndarray [shape=(1024,)] float32 or None) [shape=(n,)]
        In input order; ``None`` for a file that failed.
    failures : list of Failure
        ``(path, reason)`` of each failed file.

    Raises
    ------
    CheckpointError
        The aiSFX weights are not installed (checked once, before any file).
    """
    pretrained_embedding_net()  # a missing aisfx install fails once, before any file
    blocks, failures = get_features(paths, AISFX_PROBE_SPEC.feature, cache_dir=cache_dir, n_jobs=n_jobs,
                                    executor=executor, progress=progress)
    # (512, n_blocks) per clip -> (1024,)
    return [None if b is None else pool_embeddings(b.T) for b in blocks], failures


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
