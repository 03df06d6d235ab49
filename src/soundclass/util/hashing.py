"""The one file hasher: streaming SHA-256 of a file's bytes.

Used for content-addressed feature caches, duplicate detection in dataset
scans and provenance of pretrained weights, so that all of them agree on
what "the same file" means.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence

__all__ = ["BLOCK_SIZE", "file_digest", "files_digest", "sha256_file"]

#: Bytes read at a time.
BLOCK_SIZE = 1 << 20


def file_digest(path: str | os.PathLike) -> tuple[int, str]:
    """Size in bytes and hex SHA-256 of a file, read in :data:`BLOCK_SIZE` blocks.

    Raises
    ------
    OSError
        The file cannot be read.
    """
    return files_digest([path])


def files_digest(paths: Sequence[str | os.PathLike]) -> tuple[int, str]:
    """Size in bytes and hex SHA-256 of the concatenation of files (read in blocks, never joined).

    The digest of a file shipped in consecutive parts (the Whisper weights)
    without writing or holding the whole file.

    Raises
    ------
    OSError
        A file cannot be read.
    """
    h = hashlib.sha256()
    size = 0
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(BLOCK_SIZE):
                h.update(block)
                size += len(block)
    return size, h.hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (see :func:`file_digest`).

    Raises
    ------
    OSError
        The file cannot be read.
    """
    return file_digest(path)[1]
