"""What :func:`~soundclass.audio.load` reads from: a path, bytes, or a binary file object.

:func:`open_source` turns each into an open :class:`Source` (a name for error
messages, a seekable binary file object, the first bytes for sniffing) and
every operating-system failure into an :class:`AudioDecodeError` that says
what happened: not found, a broken symlink, a symlink loop, permission
denied, a directory, an empty file.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from soundclass.errors import AudioDecodeError, ParameterError

__all__ = ["UPLOAD_NAME", "Source", "SourceLike", "open_source", "source_name"]

#: How errors name in-memory data when no ``name=`` is given.
UPLOAD_NAME = "<upload>"

#: Bytes read for content sniffing.
HEAD_BYTES = 4096

SourceLike = str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


@dataclass
class Source:
    """An open audio source.

    Attributes
    ----------
    name : str
        The path, or ``'<upload>'`` (or the caller's ``name=``) for in-memory data.
    file : binary file object
        Seekable, positioned at the start of the audio data.
    head : bytes
        The first bytes of the data (up to 4096).
    size : int or None
        Size in bytes when known.
    fd : int or None
        OS file descriptor when ``file`` is a file on disk (libsndfile reads it natively).
    """

    name: str
    file: IO[bytes]
    head: bytes
    size: int | None
    fd: int | None = None

    def rewind(self) -> IO[bytes]:
        """``file`` positioned back at the start."""
        self.file.seek(self._start)
        return self.file

    _start: int = 0


def source_name(source: SourceLike, name: str | None = None) -> str:
    """The name errors give ``source``: ``name``, the path, or ``'<upload>'``."""
    if name is not None:
        return str(name)
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(os.fspath(source))
    return UPLOAD_NAME


def _os_reason(path: str, exc: OSError) -> str:
    code = exc.errno
    if code == errno.ENOENT:
        if os.path.islink(path):
            return f"broken symbolic link (its target {os.readlink(path)!r} does not exist)"
        return "file not found"
    if code == errno.ELOOP:
        return "symbolic link loop: the link points (via other links) back to itself"
    if code in (errno.EACCES, errno.EPERM):
        return "permission denied: the file is not readable by this user"
    if code == errno.EISDIR:
        return "is a directory, not an audio file"
    return f"cannot be opened ({exc.strerror or exc})"


@contextlib.contextmanager
def _open_path(path: str) -> Iterator[Source]:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise AudioDecodeError(path, _os_reason(path, exc)) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise AudioDecodeError(path, "is a directory, not an audio file")
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raise AudioDecodeError(path, "empty file (0 bytes)")
        file = os.fdopen(fd, "rb", closefd=False)
        try:
            head = file.read(HEAD_BYTES)
        except OSError as exc:
            raise AudioDecodeError(path, _os_reason(path, exc)) from None
        if not head:
            raise AudioDecodeError(path, "empty file (0 bytes)")
        if not file.seekable():  # a FIFO or device: read it all into memory
            file = io.BytesIO(head + file.read())
            fd_native = None
        else:
            fd_native = fd
        src = Source(path, file, head, st.st_size if stat.S_ISREG(st.st_mode) else None, fd_native)
        src.rewind()
        yield src
    finally:
        os.close(fd)


@contextlib.contextmanager
def _open_memory(source, name: str) -> Iterator[Source]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        file: IO[bytes] = io.BytesIO(source)
    elif hasattr(source, "read"):
        file = source
        seekable = getattr(file, "seekable", None)
        try:
            ok = bool(seekable()) if seekable is not None else False
        except (OSError, ValueError):
            ok = False
        if not ok:  # a pipe or a stream: hold it in memory to sniff and seek
            try:
                file = io.BytesIO(file.read())
            except (OSError, ValueError) as exc:
                raise AudioDecodeError(name, f"cannot be read ({exc})") from None
    else:
        raise ParameterError(
            f"source must be a path, bytes or a binary file object, got {type(source).__name__}"
        )
    try:
        start = file.tell()
        head = file.read(HEAD_BYTES)
        size = file.seek(0, os.SEEK_END) - start
    except (OSError, ValueError) as exc:
        raise AudioDecodeError(name, f"cannot be read ({exc})") from None
    if not isinstance(head, bytes):
        raise ParameterError(f"{name}: the file object must be opened in binary mode ('rb')")
    if not head:
        raise AudioDecodeError(name, "empty upload (0 bytes)")
    src = Source(name, file, head, size, None, start)
    src.rewind()
    yield src


def open_source(source: SourceLike, *, name: str | None = None):
    """Open ``source`` for decoding (a context manager yielding a :class:`Source`).

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray, memoryview or binary file object
        A file-like object must be readable in binary mode; it is read from its
        current position (non-seekable streams are read into memory first).
    name : str, optional
        What error messages call the source (default: the path or ``'<upload>'``).

    Raises
    ------
    AudioDecodeError
        Missing file, broken symlink, symlink loop, permission denied, a
        directory, empty data.
    ParameterError
        ``source`` of another type, or a text-mode file object.
    """
    label = source_name(source, name)
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if name is None:
            return _open_path(path)
        return _renamed(_open_path(path), label)
    return _open_memory(source, label)


@contextlib.contextmanager
def _renamed(ctx, label: str) -> Iterator[Source]:
    with ctx as src:
        src.name = label
        yield src
