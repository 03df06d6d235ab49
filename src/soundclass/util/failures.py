"""The one record of "this file failed", and what kind of cause it had.

:class:`Failure` is what every batch API returns for a file it could not use
(``get_features``, ``scan``, ``predict``...).  It is a
:class:`typing.NamedTuple` of exactly ``(path, reason)``, so code that unpacks
``for path, reason in failures`` or compares with plain tuples keeps working.

:func:`failure_kind` sorts a cause into

- ``"content"``: the file's bytes are the problem (corrupt, truncated, too
  short for the features...); the same bytes will fail again, so a
  content-addressed cache may remember it;
- ``"access"``: the file could not be reached (permission, a name the
  decoder cannot encode, removed meanwhile...); another name or another run
  may succeed, so it must *not* be remembered against the content;
- ``"transient"``: the machine, not the file (out of memory, a worker lost).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from soundclass.errors import AudioDecodeError, SoundclassError

__all__ = ["ACCESS", "CONTENT", "KINDS", "TRANSIENT", "Failure", "describe", "failure_kind"]

CONTENT = "content"
ACCESS = "access"
TRANSIENT = "transient"
KINDS = (CONTENT, ACCESS, TRANSIENT)


class Failure(NamedTuple):
    """A file that could not be used, and why.

    Attributes
    ----------
    path : str
        The file as the caller named it.
    reason : str
        Why, in words a user can act on (without the path).
    """

    path: str
    reason: str


def describe(exc: BaseException) -> str:
    """The reason text of an exception: our messages as they are, others with their type."""
    if isinstance(exc, AudioDecodeError):
        return exc.reason
    if isinstance(exc, SoundclassError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def failure_kind(exc: BaseException, path: str | os.PathLike | None = None) -> str:
    """``"content"``, ``"access"`` or ``"transient"``: what made ``exc`` happen.

    Parameters
    ----------
    exc : BaseException
        The error raised while reading or processing the file.
    path : str or os.PathLike, optional
        The file; when given, a file that is not (or no longer) a readable
        regular file, or whose name is not encodable, makes the failure ``"access"``.
    """
    for e in _chain(exc):
        if isinstance(e, MemoryError):
            return TRANSIENT
        if isinstance(e, UnicodeError) or (isinstance(e, OSError) and e.errno is not None):
            return ACCESS
    if path is not None:
        try:
            name = os.fspath(path)
            if isinstance(name, str):
                name.encode("utf-8")
            if not (os.path.isfile(name) and os.access(name, os.R_OK)):
                return ACCESS
        except (UnicodeError, OSError, TypeError, ValueError):
            return ACCESS
    return CONTENT
