"""Data files shipped inside installed packages (pretrained weights), found without importing them."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from soundclass.errors import CheckpointError

__all__ = ["installed_file"]


def installed_file(package: str, relpath: str, *, what: str, install: str) -> Path:
    """The file ``relpath`` of the installed distribution ``package``; the package is not imported.

    Parameters
    ----------
    package : str
        Distribution name, e.g. ``'aisfx'``.
    relpath : str
        Path of the file relative to the distribution's root (as in its RECORD).
    what : str
        What the file is, for the message (``'the aiSFX weights'``).
    install : str
        The command that installs the package, given in the message.

    Raises
    ------
    CheckpointError
        The package is not installed, or its installation lacks the file.
    """
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise CheckpointError(f"{what} need the {package!r} package: run `{install}`") from None
    path = Path(dist.locate_file(relpath))
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the installed {package} {dist.version}; run `{install}`")
    return path
