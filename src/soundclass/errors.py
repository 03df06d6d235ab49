"""The one error hierarchy of soundclass.

Every error the library raises on purpose derives from :class:`SoundclassError`,
so a caller can catch them all with one ``except``.  Messages name the file
and the offending value.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "check_positive_int",
    "SoundclassError",
    "ParameterError",
    "AudioDecodeError",
    "DatasetError",
    "CheckpointError",
]


class SoundclassError(Exception):
    """Base class of every error soundclass raises on purpose."""


class ParameterError(SoundclassError, ValueError):
    """A parameter has an invalid value, e.g. ``hop_length=0``."""


class AudioDecodeError(SoundclassError):
    """An audio file cannot be turned into a valid signal.

    Parameters
    ----------
    path : str or os.PathLike or None
        The file concerned (``None`` for in-memory data).
    reason : str
        Why, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = reason
        where = "<memory>" if self.path is None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.path, self.reason))


class DatasetError(SoundclassError):
    """A dataset folder or manifest is unusable (no classes, bad CSV, ...)."""


class CheckpointError(SoundclassError):
    """A checkpoint is missing, corrupt, or does not describe a known model."""


def check_positive_int(name: str, value) -> int:
    """``value`` as an ``int`` if it is a positive integer (numpy integers too, not bools).

    Raises
    ------
    ParameterError
        ``f"{name}={value!r} must be a positive integer"`` otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ParameterError(f"{name}={value!r} must be a positive integer")
    return int(value)
