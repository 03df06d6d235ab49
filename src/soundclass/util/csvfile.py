"""The one CSV writer: every table soundclass writes (submissions, failure lists, scans, predictions).

- **Encoding**: UTF-8 with ``errors='surrogateescape'``.  A file name that is
  not valid UTF-8 (legal on Linux, e.g. ``b'bad_\\xff\\xfe_name.wav'``) reaches
  Python as a string with lone surrogates (:pep:`383`); it is written back as
  its original bytes.  Read such a CSV back with ``open(path, encoding='utf-8',
  errors='surrogateescape', newline='')``.
- **Quoting**: RFC 4180 minimal quoting: a field holding a comma, a double
  quote, a tab, a CR or an LF is quoted (quotes doubled), so a name with a bare
  CR, a newline or a tab reads back as one field with :func:`csv.reader`.
  Records end with ``\\n``.
- **Spreadsheet formulas** (``excel_safe=True``): a cell starting with ``=``,
  ``+``, ``-``, ``@``, a tab or a CR gets a ``'`` prefixed (OWASP "CSV injection").
- **Atomic**: written through :func:`soundclass.util.atomic.atomic_open`, so a
  reader never sees half a table.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from soundclass.util.atomic import atomic_open

__all__ = ["CSV_ENCODING", "CSV_ERRORS", "FORMULA_PREFIXES", "excel_safe_cell", "write_csv"]

CSV_ENCODING = "utf-8"
CSV_ERRORS = "surrogateescape"  # non-UTF-8 file names are written as their own bytes
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def excel_safe_cell(value: str) -> str:
    """``value`` with a ``'`` prefixed if it starts like a spreadsheet formula.

    Examples
    --------
    >>> excel_safe_cell("=HYPERLINK(1)"), excel_safe_cell("a=b.wav")
    ("'=HYPERLINK(1)", 'a=b.wav')
    """
    return "'" + value if value.startswith(FORMULA_PREFIXES) else value


_QUOTED = (",", '"', "\r", "\n", "\t")


def _csv_field(value) -> str:
    """``value`` (``str()`` of a non-string) quoted (RFC 4180) if it holds a comma, quote, CR, LF or tab."""
    if not isinstance(value, str):
        value = str(value)
    if any(c in value for c in _QUOTED):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv_record(row: Sequence[str]) -> str:
    """One CSV record ending in ``\\n``.

    Not ``csv.writer``: with ``lineterminator='\\n'`` it leaves a bare CR (and a
    tab) unquoted on Python < 3.12, and that row then reads back as two.  The
    output is what ``csv.writer(quoting=csv.QUOTE_MINIMAL)`` writes otherwise,
    and :func:`csv.reader` reads it back field for field.
    """
    return ",".join(_csv_field(v) for v in row) + "\n"


def write_csv(
    path: str | os.PathLike,
    header: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    excel_safe: bool = False,
) -> Path:
    """Write a CSV the way every soundclass table is written (see the module notes).

    Parameters
    ----------
    path : path
        The file to write (its folder is created).
    header : sequence of str
        Column names.
    rows : iterable of sequence of str
        The records; every value is a string.
    excel_safe : bool
        Prefix ``'`` to data cells starting like a formula (:func:`excel_safe_cell`).

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "w", newline="", encoding=CSV_ENCODING, errors=CSV_ERRORS) as fh:
        fh.write(_csv_record(header))
        for row in rows:
            if excel_safe:
                row = [excel_safe_cell(v) for v in row]
            fh.write(_csv_record(row))
    return path
