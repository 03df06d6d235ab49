"""The one file-progress bar of batch commands (tqdm on stderr, or nothing)."""

from __future__ import annotations

import sys

__all__ = ["NoBar", "progress_bar"]


class NoBar:
    """A progress bar that shows nothing (``progress=False``)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, desc: str, enabled: bool = True):
    """A tqdm bar over ``total`` files on stderr, or a :class:`NoBar` when not ``enabled``.

    Returns
    -------
    object with ``update(n)`` and ``close()``
    """
    if not enabled:
        return NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="file", desc=desc, file=sys.stderr, dynamic_ncols=True,
                smoothing=0.1)
