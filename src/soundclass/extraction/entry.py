"""The file format of one feature cache entry: ``.npy`` bytes and a checksum trailer.

An entry is the ``.npy`` serialisation of a float32 array followed by
:data:`CHECKSUM_MAGIC` and the SHA-256 digest (32 bytes) of the ``.npy``
bytes; ``np.load`` still reads the file.  :func:`entry_bytes` writes that
layout, :func:`read_entry` reads it back and refuses anything whose checksum
does not match, so a damaged entry is never returned as data.
"""

from __future__ import annotations

import hashlib
import io
import os

import numpy as np

from soundclass.errors import CacheEntryError

__all__ = ["CHECKSUM_MAGIC", "entry_bytes", "read_entry"]

#: Start of the trailer of a feature entry; the SHA-256 digest (32 bytes) follows.
CHECKSUM_MAGIC = b"SCSHA256"
_TRAILER = len(CHECKSUM_MAGIC) + 32


def entry_bytes(arr: np.ndarray) -> bytes:
    """``.npy`` bytes of ``arr`` followed by the checksum trailer."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    payload = buf.getvalue()
    return payload + CHECKSUM_MAGIC + hashlib.sha256(payload).digest()


def read_entry(path: str | os.PathLike) -> np.ndarray:
    """The array of the entry at ``path``, its checksum verified.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    np.ndarray
        As stored (the caller checks dtype and shape against what it expects).

    Raises
    ------
    CacheEntryError
        The file is missing or unreadable, its trailer or checksum does not
        match (bit rot, a torn write, an older layout), or it is not a ``.npy``
        array; the message names the file and the reason.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise CacheEntryError(path, "the feature cache entry is missing") from None
    except OSError as exc:
        raise CacheEntryError(path, f"cannot read the feature cache entry ({exc.strerror or exc})") from exc
    if len(data) <= _TRAILER or data[-_TRAILER:-32] != CHECKSUM_MAGIC:
        raise CacheEntryError(path, "the feature cache entry has no checksum trailer (cut short or "
                              "an older layout)")
    payload = data[:-_TRAILER]
    if hashlib.sha256(payload).digest() != data[-32:]:
        raise CacheEntryError(path, "the feature cache entry fails its checksum (damaged)")
    try:
        return np.load(io.BytesIO(payload), allow_pickle=False)
    except (ValueError, EOFError) as exc:
        raise CacheEntryError(path, f"the feature cache entry is not a .npy array ({exc})") from exc
