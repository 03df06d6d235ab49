"""Features that stay in the feature cache: a read-only sequence loaded one item at a time.

:meth:`soundclass.extraction.cache.FeatureCache.get` with ``lazy=True``
checks every entry once (read, checksum, shape) and keeps only its path and
shape: a :class:`StoredFeatures` behaves like the list of arrays ``get``
returns otherwise (``None`` for a failed file), but ``features[i]`` reads
entry ``i`` from disk on each access, so whoever iterates it in batches holds
one batch, not the dataset.  Shapes (hence clip lengths) are known without
reading anything.

:func:`take` and :func:`feature_shapes` work on both kinds of sequences, so
code written once handles in-memory lists and stored features alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from soundclass.errors import CacheEntryError, ParameterError
from soundclass.extraction.entry import read_entry

__all__ = ["StoredFeatures", "feature_shapes", "take"]

Shape = tuple[int, ...]


class StoredFeatures(Sequence):
    """A read-only sequence of float32 features read from cache entries on access.

    Parameters
    ----------
    sources : sequence of (path, np.ndarray or None) [shape=(n,)]
        Per item: the entry file to read it from, the array itself (a feature
        that could not be written to the cache is held in memory), or
        ``None`` for a failed file.
    shapes : sequence of (tuple of int or None) [shape=(n,)]
        The shape of every item, as checked when the entry was verified;
        ``None`` exactly where ``sources`` is ``None``.

    Notes
    -----
    ``features[i]`` verifies the entry's checksum and shape every time and
    raises :class:`~soundclass.errors.CacheEntryError` naming the file when
    it vanished or changed since it was checked; it never returns other data.
    """

    def __init__(self, sources: Sequence[str | os.PathLike | np.ndarray | None],
                 shapes: Sequence[Shape | None]):
        if len(sources) != len(shapes):
            raise ParameterError(f"{len(sources)} sources but {len(shapes)} shapes")
        self._sources: list[Path | np.ndarray | None] = []
        self._shapes: list[Shape | None] = []
        for i, (src, shape) in enumerate(zip(sources, shapes, strict=True)):
            if (src is None) != (shape is None):
                raise ParameterError(f"item {i}: a source needs a shape and a missing item none")
            if isinstance(src, np.ndarray):
                if tuple(src.shape) != tuple(shape):
                    raise ParameterError(f"item {i}: array of shape {src.shape} given shape {shape}")
                src = np.ascontiguousarray(src, dtype=np.float32)
            elif src is not None:
                src = Path(src)
            self._sources.append(src)
            self._shapes.append(None if shape is None else tuple(int(d) for d in shape))

    def __len__(self) -> int:
        return len(self._sources)

    def __getitem__(self, index: Any) -> Any:
        """Item ``index`` read and verified (``None`` for a failed file); a slice gives a ``StoredFeatures``."""
        if isinstance(index, slice):
            return self.take(range(len(self))[index])
        i = _index(index, len(self))
        src, shape = self._sources[i], self._shapes[i]
        if src is None or isinstance(src, np.ndarray):
            return src
        arr = read_entry(src)
        if arr.dtype != np.float32 or arr.shape != shape:
            raise CacheEntryError(src, f"the feature cache entry holds {arr.dtype} {arr.shape}, not the float32 "
                                  f"{shape} checked earlier (replaced meanwhile)")
        return arr

    def __iter__(self) -> Iterator[np.ndarray | None]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"StoredFeatures({len(self)} items)"

    @property
    def shapes(self) -> list[Shape | None]:
        """The shape of every item, without reading it (``None`` for a failed file)."""
        return list(self._shapes)

    @property
    def n_frames(self) -> np.ndarray:
        """Frames of every item [shape=(n,)], int64: ``shape[1]``; 1 for a vector, 0 for a failed file."""
        return np.array([0 if s is None else (s[1] if len(s) == 2 else 1) for s in self._shapes],
                        dtype=np.int64)

    @property
    def paths(self) -> list[Path | None]:
        """The entry file of every item (``None`` for a failed file or one held in memory)."""
        return [s if isinstance(s, Path) else None for s in self._sources]

    def take(self, indices: Sequence[int] | np.ndarray) -> StoredFeatures:
        """The items at ``indices``, in that order, still unread: another ``StoredFeatures``."""
        picked = [_index(i, len(self)) for i in np.asarray(indices, dtype=np.int64).reshape(-1)]
        return StoredFeatures([self._sources[i] for i in picked], [self._shapes[i] for i in picked])


def _index(i: Any, n: int) -> int:
    try:
        k = int(i)
    except (TypeError, ValueError):
        raise TypeError(f"indices must be integers or slices, not {type(i).__name__}") from None
    if isinstance(i, (bool, np.bool_)) or k != i:
        raise TypeError(f"indices must be integers or slices, not {type(i).__name__}")
    if not -n <= k < n:
        raise IndexError(f"index {k} out of range for {n} items")
    return k + n if k < 0 else k


def take(features: Sequence[Any], indices: Sequence[int] | np.ndarray) -> Sequence[Any]:
    """``[features[i] for i in indices]``, without reading a :class:`StoredFeatures`.

    Parameters
    ----------
    features : sequence of np.ndarray, or StoredFeatures
    indices : sequence of int or np.ndarray [shape=(k,)]

    Returns
    -------
    list or StoredFeatures
        A list for a list (the same arrays, not copies); a ``StoredFeatures``
        of the chosen entries for a ``StoredFeatures``.
    """
    if isinstance(features, StoredFeatures):
        return features.take(indices)
    return [features[int(i)] for i in np.asarray(indices, dtype=np.int64).reshape(-1)]


def feature_shapes(features: Sequence[Any]) -> list[Shape | None]:
    """The shape of every item (``None`` for a ``None`` item), reading nothing from a :class:`StoredFeatures`."""
    if isinstance(features, StoredFeatures):
        return features.shapes
    return [None if f is None else tuple(np.shape(f)) for f in features]
