"""The CTranslate2 ``model.bin`` file format, read without CTranslate2.

A CTranslate2 model (``ctranslate2/specs/model_spec.py``, ``_serialize``) is
one little-endian binary file:

- ``uint32`` format version;
- the spec name: a *string* (``uint16`` byte length including a final NUL,
  the UTF-8 bytes, the NUL);
- ``uint32`` spec revision; ``uint32`` variable count;
- per variable: its name (a string), ``uint8`` rank, ``rank`` x ``uint32``
  dims, ``uint8`` dtype (:data:`DTYPES`), ``uint32`` byte count, the raw data;
- ``uint32`` alias count, then (alias, target) string pairs.

:func:`read_model` parses it from one file or from several files that are
its consecutive parts (read as one stream, never joined on disk or in memory),
with bounds checks everywhere: a malformed file is a
:class:`~soundclass.errors.CheckpointError` naming it, never a crash or an
allocation larger than the file.  Only the variables a caller asks for are
kept, as float32 numpy arrays; the others are skipped while streaming.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from soundclass.errors import CheckpointError

__all__ = ["DTYPES", "MAX_RANK", "CT2Model", "read_model"]

#: dtype codes of the format (``include/ctranslate2/types.h``), as numpy dtypes.
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"),
          4: np.dtype("<f2"), 5: None}  # 5: bfloat16 (no numpy dtype: read as uint16 bits)
#: Highest rank accepted (the format allows 255; real models use at most 4).
MAX_RANK = 8
_MAX_NAME = 4096  # bytes of one name
_SKIP_BLOCK = 1 << 20


@dataclass(frozen=True)
class CT2Model:
    """What :func:`read_model` read.

    Attributes
    ----------
    path : str
        The file (or its first part).
    version, revision : int
        Format version and spec revision.
    spec : str
        Spec name, e.g. ``'WhisperSpec'``.
    variables : dict of str to np.ndarray
        The kept variables, float32 for float data, by name.
    shapes : dict of str to tuple of int
        Shape of every variable in the file (kept or not).
    aliases : dict of str to str
        Alias -> target variable name.
    """

    path: str
    version: int
    spec: str
    revision: int
    variables: dict[str, np.ndarray] = field(repr=False)
    shapes: dict[str, tuple[int, ...]] = field(repr=False)
    aliases: dict[str, str] = field(repr=False)


class _Stream:
    """Consecutive files read as one stream, with a byte budget (their total size)."""

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        self.remaining = sum(p.stat().st_size for p in self.paths)
        self._index = 0
        self._fh: BinaryIO | None = None

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()

    def _read_some(self, n: int) -> bytes:
        while self._index < len(self.paths):
            if self._fh is None:
                self._fh = open(self.paths[self._index], "rb")  # noqa: SIM115 - closed below
            block = self._fh.read(n)
            if block:
                return block
            self._fh.close()
            self._fh, self._index = None, self._index + 1
        return b""

    def read(self, n: int, what: str) -> bytes:
        """Exactly ``n`` bytes, or a CheckpointError (``what`` says what was being read)."""
        if n > self.remaining:
            raise CheckpointError(f"{self.paths[0]}: truncated or malformed CTranslate2 file "
                                  f"({what} needs {n} bytes, {self.remaining} left)")
        parts, got = [], 0
        while got < n:
            block = self._read_some(n - got)
            if not block:  # a file shrank while reading
                raise CheckpointError(f"{self.paths[0]}: file ended early while reading {what}")
            parts.append(block)
            got += len(block)
        self.remaining -= n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def skip(self, n: int, what: str) -> None:
        while n > 0:
            step = min(n, _SKIP_BLOCK)
            self.read(step, what)
            n -= step

    def unpack(self, fmt: str, what: str) -> tuple:
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (length,) = self.unpack("H", what)
        if not 1 <= length <= _MAX_NAME:
            raise CheckpointError(f"{self.paths[0]}: malformed CTranslate2 file ({what} has length {length})")
        raw = self.read(length, what)
        if raw[-1:] != b"\0":
            raise CheckpointError(f"{self.paths[0]}: malformed CTranslate2 file ({what} is not NUL-terminated)")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{self.paths[0]}: malformed CTranslate2 file ({what} is not UTF-8)") from None


def _to_float32(raw: bytes, code: int, shape: tuple[int, ...]) -> np.ndarray:
    if code == 5:  # bfloat16: the high half of a float32
        bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(shape)
    arr = np.frombuffer(raw, dtype=DTYPES[code]).reshape(shape)
    return arr.astype(np.float32) if arr.dtype.kind == "f" else arr.copy()


def read_model(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    keep: Callable[[str], bool] = lambda name: True,
) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (one file, or its consecutive parts).

    Parameters
    ----------
    paths : path or sequence of paths
        The file, or its parts in order (read as one stream).
    keep : callable
        ``keep(name)`` is True for the variables to return; the others are skipped.

    Returns
    -------
    CT2Model
        Float variables as float32 arrays (float16 and bfloat16 widened), integer ones as stored.

    Raises
    ------
    CheckpointError
        A file is missing or unreadable, or the bytes do not follow the format
        (a length past the end, an unknown dtype, a byte count that does not
        match the shape, bytes left over); the message names the (first) file.
    """
    parts = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    if not parts:
        raise CheckpointError("read_model: no file given")
    first = parts[0]
    try:
        with _Stream(parts) as s:
            (version,) = s.unpack("I", "the format version")
            spec = s.string("the spec name")
            revision, count = s.unpack("II", "the revision and variable count")
            if count > s.remaining // 8:  # every variable takes at least 8 bytes
                raise CheckpointError(f"{first}: malformed CTranslate2 file ({count} variables in "
                                      f"{s.remaining} bytes)")
            variables: dict[str, np.ndarray] = {}
            shapes: dict[str, tuple[int, ...]] = {}
            for i in range(count):
                name = s.string(f"the name of variable {i}")
                (rank,) = s.unpack("B", f"the rank of {name}")
                if rank > MAX_RANK:
                    raise CheckpointError(f"{first}: malformed CTranslate2 file ({name} has rank {rank})")
                shape = s.unpack("I" * rank, f"the shape of {name}") if rank else ()
                code, nbytes = s.unpack("BI", f"the dtype of {name}")
                if code not in DTYPES:
                    raise CheckpointError(f"{first}: malformed CTranslate2 file ({name} has dtype code {code})")
                itemsize = 2 if DTYPES[code] is None else DTYPES[code].itemsize
                if nbytes != itemsize * int(np.prod(shape, dtype=np.int64)):
                    raise CheckpointError(f"{first}: malformed CTranslate2 file ({name}: {nbytes} bytes "
                                          f"for shape {shape} of itemsize {itemsize})")
                if name in shapes:
                    raise CheckpointError(f"{first}: malformed CTranslate2 file ({name} twice)")
                shapes[name] = tuple(shape)
                if keep(name):
                    variables[name] = _to_float32(s.read(nbytes, name), code, tuple(shape))
                else:
                    s.skip(nbytes, name)
            (n_aliases,) = s.unpack("I", "the alias count")
            aliases = {}
            for i in range(n_aliases):
                alias = s.string(f"alias {i}")
                aliases[alias] = s.string(f"the target of alias {alias}")
            if s.remaining:
                raise CheckpointError(f"{first}: malformed CTranslate2 file ({s.remaining} bytes after "
                                      "the aliases)")
    except OSError as exc:
        raise CheckpointError(f"{first}: cannot be read ({exc})") from exc
    return CT2Model(path=str(first), version=version, spec=spec, revision=revision,
                    variables=variables, shapes=shapes, aliases=aliases)
