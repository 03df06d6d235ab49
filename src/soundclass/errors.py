"""The one error hierarchy of soundclass.

Every error the library raises on purpose derives from :class:`SoundclassError`,
so a caller can catch them all with one ``except``.  Messages name the file
and the offending value.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = [
    "check_fraction",
    "check_int",
    "check_non_negative_int",
    "check_positive",
    "check_positive_int",
    "check_range",
    "is_int",
    "is_number",
    "SoundclassError",
    "ParameterError",
    "AudioDecodeError",
    "CacheEntryError",
    "DatasetError",
    "SplitError",
    "CheckpointError",
    "ExportError",
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


class CacheEntryError(SoundclassError):
    """A feature cache entry that was checked earlier is gone or no longer valid when read.

    Parameters
    ----------
    path : str or os.PathLike
        The entry file.
    reason : str
        What is wrong with it, in words a user can act on.
    """

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):  # picklable across process pools
        return (type(self), (self.path, self.reason))


class DatasetError(SoundclassError):
    """A dataset folder or manifest is unusable (no classes, bad CSV, ...)."""


class SplitError(DatasetError):
    """The clips cannot be split as asked: too few groups once copies are tied together.

    A property of the dataset and its groups, whatever the model: ``--model auto``
    stops at once instead of trying every candidate.
    """


class CheckpointError(SoundclassError):
    """A checkpoint is missing, corrupt, or does not describe a known model."""


class ExportError(SoundclassError):
    """A model cannot be written as an ONNX graph (torch cannot trace it, or it does not
    take what the exported front end computes); the message names the model and why."""


def is_int(value, *, allow_numpy: bool = True) -> bool:
    """Whether ``value`` is an integer: a Python one or (``allow_numpy``) a numpy one, never a bool.

    The one definition of "an integer" behind :func:`check_int` and the
    predicates of the training ``Setting`` table.
    """
    kinds = (int, np.integer) if allow_numpy else int
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, kinds)


def is_number(value) -> bool:
    """Whether ``value`` is a real number (Python or numpy int or float, possibly not finite), not a bool."""
    return (not isinstance(value, (bool, np.bool_))
            and isinstance(value, (int, float, np.integer, np.floating)))


def check_int(name: str, value, *, low: int | None = None, high: int | None = None,
              allow_none: bool = False, allow_numpy: bool = True, what: str | None = None) -> int | None:
    """``value`` as an ``int`` if it is an integer in ``[low, high]``.

    Integers and numpy integers are accepted (numpy ones not with
    ``allow_numpy=False``); bools, floats (``2.5`` and ``2.0``) and strings
    are not.

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : object
    low, high : int or None
        Inclusive bounds (``None``: unbounded).
    allow_none : bool
        Return ``None`` for ``None`` instead of refusing it.
    allow_numpy : bool
        Accept numpy integers (off where a value must be a plain ``int``).
    what : str or None
        The requirement in words, e.g. ``"a positive integer"``; default
        ``"an integer in [low, high]"`` or ``"an integer >= low"``.

    Raises
    ------
    ParameterError
        ``f"{name}={value!r} must be {what}"`` (``" or None"`` appended when
        ``allow_none``).
    """
    if value is None and allow_none:
        return None
    if what is None:
        if low is not None and high is not None:
            what = f"an integer in [{low}, {high}]"
        elif low is not None:
            what = f"an integer >= {low}"
        elif high is not None:
            what = f"an integer <= {high}"
        else:
            what = "an integer"
    if (not is_int(value, allow_numpy=allow_numpy) or (low is not None and value < low)
            or (high is not None and value > high)):
        raise ParameterError(f"{name}={value!r} must be {what}" + (" or None" if allow_none else ""))
    return int(value)


def check_positive_int(name: str, value, *, allow_none: bool = False,
                       allow_numpy: bool = True) -> int | None:
    """``value`` as an ``int`` if it is a positive integer (numpy integers too unless
    ``allow_numpy=False``; never bools).

    Raises
    ------
    ParameterError
        ``f"{name}={value!r} must be a positive integer"`` otherwise (with
        ``" or None"`` when ``allow_none``).
    """
    return check_int(name, value, low=1, allow_none=allow_none, allow_numpy=allow_numpy,
                     what="a positive integer")


def check_non_negative_int(name: str, value, *, allow_none: bool = False,
                           allow_numpy: bool = True) -> int | None:
    """``value`` as an ``int`` if it is an integer >= 0 (numpy integers too unless
    ``allow_numpy=False``; never bools).

    Raises
    ------
    ParameterError
        ``f"{name}={value!r} must be a non-negative integer"`` otherwise.
    """
    return check_int(name, value, low=0, allow_none=allow_none, allow_numpy=allow_numpy,
                     what="a non-negative integer")


def check_range(name: str, value, *, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False, what: str | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number within the bounds.

    Parameters
    ----------
    name : str
    value : object
        An int or float (numpy scalars too); bools are refused.
    low, high : float or None
        Bounds (``None``: unbounded on that side).
    low_open, high_open : bool
        Exclude the bound itself.
    what : str or None
        The requirement in words (default: the interval, e.g. ``"in [0, 1)"``).

    Raises
    ------
    ParameterError
        ``f"{name}={value!r} must be in [low, high]"`` (brackets as the bounds are
        open or closed; ``"> low"``, ``">= low"``... for one-sided bounds).
    """
    if what is not None:
        pass
    elif low is not None and high is not None:
        what = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        what = f"{'>' if low_open else '>='} {low:g}"
    elif high is not None:
        what = f"{'<' if high_open else '<='} {high:g}"
    else:
        what = "a finite number"
    ok = is_number(value) and np.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        raise ParameterError(f"{name}={value!r} must be {what}")
    return float(value)


def check_positive(name: str, value) -> float:
    """``value`` as a ``float`` if it is a finite number > 0 (``"must be a positive number"``)."""
    return check_range(name, value, low=0.0, low_open=True, what="a positive number")


def check_fraction(name: str, value, *, high_open: bool = False) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (``[0, 1)`` with ``high_open``)."""
    return check_range(name, value, low=0.0, high=1.0, high_open=high_open)
