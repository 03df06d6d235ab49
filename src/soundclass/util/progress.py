"""The one progress bar of every long step: live on a terminal, a line now and then elsewhere.

On a terminal (standard error is a tty) a bar is tqdm's live bar, redrawn in
place.  Anywhere else (a CI log, ``nohup``, a subprocess whose standard error
is captured, a file) carriage-return redraws would pile up as one line per
update, so a bar is a :class:`LineBar`: one plain line every
:data:`LINE_INTERVAL` seconds at most (``features (logmel): 120/400 files
(30%), 12 s, about 28 s left``) and a last one when it ends; a training's
epoch bar writes a line per epoch and its batch bar a line a minute.  A bar
made with ``leave=False`` (the batches of one epoch) writes its last line only
when it has already written one, so short steps write nothing.  Jupyter gets
its widget bar (``tqdm.autonotebook``).

Every bar says what it is for: ``desc`` names the step and what it works for,
e.g. ``features (logmel)``, ``train cnn``, ``epoch 3 (cnn)``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from tqdm.autonotebook import tqdm as auto_tqdm  # the widget bar in Jupyter, else tqdm.std's
from tqdm.std import tqdm as plain_tqdm

__all__ = ["LINE_INTERVAL", "LineBar", "NoBar", "progress_bar"]

#: Seconds between two lines of a :class:`LineBar`.
LINE_INTERVAL = 10.0


class NoBar:
    """A progress bar that shows nothing (``progress=False``)."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _seconds(s: float) -> str:
    if s >= 3600:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    if s >= 60:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{s:.0f} s"


class LineBar:
    """Progress as plain lines: at most one per ``interval`` seconds, and one at the end.

    Parameters
    ----------
    total : int or None
        Units of work (``None``: unknown, no percentage).
    desc : str
        What the bar is for.
    unit : str
        What is counted (``'file'``, ``'epoch'``, ``'batch'``).
    file : text stream
        Where the lines go.
    initial : int
        Units already done (a resumed training).
    leave : bool
        Write the last line even if no line was written before.
    interval : float
        Seconds between two lines.
    clock : callable
        Seconds (``time.monotonic``; a test passes its own).
    """

    def __init__(self, total: int | None, *, desc: str, unit: str = "file", file: TextIO,
                 initial: int = 0, leave: bool = True, interval: float = LINE_INTERVAL,
                 clock=time.monotonic):
        self.total, self.desc, self.unit, self.file = total, desc, unit, file
        self.n, self.leave, self.interval, self.clock = int(initial), leave, float(interval), clock
        self.initial = int(initial)
        self.start = self.last = clock()
        self.postfix = ""
        self.lines = 0
        self.shown = None  # the count of the last line written
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self._write(now)

    def set_postfix(self, **values: Any) -> None:
        """Values shown after the count (e.g. ``loss=0.41``), on the next line."""
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if (self.leave or self.lines) and self.shown != self.n:  # not the last line again
            self._write(self.clock())

    def _write(self, now: float) -> None:
        elapsed = now - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        plural = "es" if self.unit.endswith(("s", "sh", "tch", "x")) else "s"
        text = f"{self.desc}: {count} {self.unit}{plural}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f}%)"
        text += f", {_seconds(elapsed)}"
        done = self.n - self.initial
        if self.total and 0 < done and self.n < self.total and not self.closed:
            text += f", about {_seconds(elapsed / done * (self.total - self.n))} left"
        if self.postfix:
            text += f"; {self.postfix}"
        print(text, file=self.file, flush=True)
        self.last, self.shown = now, self.n
        self.lines += 1


def _is_terminal(file: TextIO) -> bool:
    try:
        return bool(file.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(total: int | None, *, desc: str, unit: str = "file", enabled: bool = True,
                 leave: bool = True, initial: int = 0, file: TextIO | None = None,
                 interval: float = LINE_INTERVAL):
    """A progress bar over ``total`` units on standard error (see the module notes).

    Parameters
    ----------
    total : int or None
    desc : str
        What the bar is for, e.g. ``'features (logmel)'``.
    unit : str
    enabled : bool
        ``False``: a :class:`NoBar`.
    leave : bool
        Keep the finished bar (a :class:`LineBar`: write its last line even when short).
    initial : int
        Units already done.
    file : text stream, optional
        Default ``sys.stderr`` (looked up at the call).
    interval : float
        Seconds between two lines when ``file`` is not a terminal (``0``: a line
        per update, e.g. per epoch).

    Returns
    -------
    object with ``update(n)``, ``set_postfix(**values)`` and ``close()``
        tqdm's bar on a terminal or in Jupyter, else a :class:`LineBar`.
    """
    if not enabled:
        return NoBar()
    file = sys.stderr if file is None else file

    if auto_tqdm is not plain_tqdm and file is sys.stderr:  # Jupyter: its widget, not lines
        return auto_tqdm(total=total, initial=initial, unit=unit, desc=desc, leave=leave)
    if not _is_terminal(file):
        return LineBar(total, desc=desc, unit=unit, file=file, initial=initial, leave=leave,
                       interval=interval)
    return plain_tqdm(total=total, initial=initial, unit=unit, desc=desc, file=file, leave=leave,
                      dynamic_ncols=True, smoothing=0.1)
