"""Capture what C libraries print on file descriptor 2 while they decode.

libmpg123 (inside libsndfile) writes "Note: Illegal Audio-MPEG-Header ...
Trying to resync" straight to fd 2 for damaged MPEG data.  :func:`captured_stderr`
points fd 2 at a temporary file around the call, then puts back the original
and re-emits whatever was not a libmpg123 note.  A process-wide lock makes
concurrent captures take turns (other threads' writes to fd 2 in that window
are captured too and re-emitted afterwards, so nothing is lost).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

__all__ = ["captured_stderr", "mpg123_warning"]

_LOCK = threading.Lock()
# libmpg123's lines: "Note: Illegal Audio-MPEG-Header ...", "Note: Trying to resync...",
# "Note: Skipped 312 bytes in input.", "[src/libmpg123/parse.c:1234] error: ...".
_MPG123 = re.compile(r"^\s*(?:\[[^\]]*\]\s*)?(?:note|warning|error)\b|mpg123", re.I)


@contextlib.contextmanager
def captured_stderr(lines: list[str]) -> Iterator[None]:
    """Run the body with fd 2 redirected; append libmpg123's lines to ``lines``.

    Lines that do not look like libmpg123's are written back to the real fd 2.
    """
    with _LOCK, tempfile.TemporaryFile() as tmp:
        try:
            sys.stderr.flush()
        except (AttributeError, OSError, ValueError):
            pass
        try:
            saved = os.dup(2)
        except OSError:  # no fd 2 at all: nothing to protect
            yield
            return
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
            other = []
            for line in text.splitlines():
                (lines if _MPG123.match(line) else other).append(line)
            if other:
                os.write(2, ("\n".join(other) + "\n").encode())


def mpg123_warning(lines: list[str]) -> str | None:
    """One warning summarising libmpg123's notes, or ``None`` if there were none."""
    if not lines:
        return None
    resyncs = sum("resync" in line.lower() for line in lines)
    first = lines[0].strip()
    if len(first) > 120:
        first = first[:117] + "..."
    if resyncs:
        return f"damaged MPEG data: the decoder resynchronised {resyncs} time(s) ({first})"
    return f"MPEG decoder notes: {len(lines)} line(s) ({first})"
