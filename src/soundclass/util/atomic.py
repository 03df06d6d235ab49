"""The one atomic writer: a file is either its old version or its complete new one.

Every writer puts the data in a temporary file *in the destination's folder*
(so the final rename never crosses file systems), flushes and ``fsync``\\ s it,
and moves it over the destination with :func:`os.replace`, which is atomic
on POSIX and Windows.  A crash or ``kill -9`` at any point leaves either the
old file or the new one, never a half-written file; a leftover temporary
file is named ``.<name>.<pid>.<random>.tmp`` (see :data:`TMP_SUFFIX`), so a
cleaner can recognise and delete it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_open",
    "is_temp_name",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

#: Suffix of the temporary files written before the final rename.
TMP_SUFFIX = ".tmp"


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of this module's temporary names."""
    return name.startswith(".") and name.endswith(TMP_SUFFIX)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", *, encoding: str | None = None,
                errors: str | None = None, newline: str | None = None,
                fsync: bool = True) -> Iterator[IO[Any]]:
    """A file object whose content replaces ``path`` atomically when the block ends.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    mode : {'wb', 'w'}
        Binary or text.
    encoding, errors, newline : str or None
        As for :func:`open` (text mode only; ``encoding`` defaults to UTF-8).
    fsync : bool
        Flush the data to disk before the rename (off only for throw-away files).

    Yields
    ------
    file object
        Writing to it writes the temporary file; if the block raises, the
        temporary file is deleted and ``path`` is left untouched.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r} must be 'wb' or 'w'")
    path = Path(path)
    tmp = _temp_path(path)
    if mode == "w":
        fh = open(tmp, "w", encoding=encoding or "utf-8", errors=errors, newline=newline)  # noqa: SIM115
    else:
        fh = open(tmp, "wb")  # noqa: SIM115
    try:
        with fh:
            yield fh
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if fsync:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path`` as a :class:`~pathlib.Path`."""
    with atomic_open(path, "wb", fsync=fsync) as fh:
        fh.write(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8",
                      errors: str = "strict", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (``\\n`` line ends as given, no translation).

    ``errors`` as for :meth:`str.encode` (e.g. ``'backslashreplace'`` for pages that
    show file names that are not valid UTF-8).
    """
    return write_bytes_atomic(path, text.encode(encoding, errors), fsync=fsync)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int | None = 2,
                      sort_keys: bool = False, allow_nan: bool = False,
                      fsync: bool = True) -> Path:
    """Write ``obj`` as UTF-8 JSON (with a final newline) to ``path`` atomically.

    Raises
    ------
    ValueError
        ``obj`` holds NaN or infinity and ``allow_nan`` is false (nothing is written).
    TypeError
        ``obj`` is not JSON-serialisable (nothing is written).
    """
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys, allow_nan=allow_nan)
    return write_text_atomic(path, text + "\n", fsync=fsync)
