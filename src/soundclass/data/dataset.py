"""Finding the clips of a dataset: folder-per-class trees and CSV manifests.

A dataset is a list of :class:`Item` (path, label, group) plus the sorted class
names.  Discovery only lists files; decoding happens elsewhere so that one
bad file never stops a listing.

Every file name is listed
-------------------------
- Names starting with a dot (``.hidden.wav``, the literal Linux name
  ``..\\..\\evil.wav``) are clips like any other.
- Names that are not valid UTF-8 (legal on Linux) come back as :class:`str`
  with lone surrogates (:pep:`383`, ``os.fsdecode``): they open as they are,
  and writers that use ``errors='surrogateescape'`` (the submission and
  manifest CSVs) write the original bytes back.  :func:`display_path` renders
  them for messages (``bad_\\xff\\xfe_name.wav``).
- Only the tool folders in :data:`IGNORED_DIRS` (version control, notebook
  checkpoints, macOS archive metadata, ``__pycache__``) are not searched; they
  never hold a user's clips.  Every other folder is, dot-named or not.
- In a folder-per-class tree, audio files directly in the root (no class
  folder, so no label) are not items: a :class:`UserWarning` names them.
- CSV manifests are read as UTF-8 with ``errors='surrogateescape'``, so a
  manifest holding a non-UTF-8 name (as bytes) finds that file.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from soundclass.errors import DatasetError, ParameterError

__all__ = [
    "AUDIO_EXTENSIONS",
    "IGNORED_DIRS",
    "Item",
    "Dataset",
    "discover",
    "list_audio",
    "assign_groups",
    "display_path",
]

AUDIO_EXTENSIONS = (
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff",
    ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64", ".sd2", ".voc", ".htk",
)

# Folders of tools, never of clips; every other folder (dot-named included) is searched.
IGNORED_DIRS = frozenset({".git", ".hg", ".svn", ".ipynb_checkpoints", "__pycache__", "__MACOSX"})

_PATH_COLUMNS = ("path", "filename", "file", "name", "fname")
_LABEL_COLUMNS = ("label", "class", "category", "target")


@dataclass(frozen=True)
class Item:
    """One clip: its path, class label (``None`` if unlabelled) and group."""

    path: str
    label: str | None = None
    group: str | None = None

    @property
    def name(self) -> str:
        """The file name, as written in a submission CSV."""
        return os.path.basename(self.path)


@dataclass(frozen=True)
class Dataset:
    """Clips and the sorted class names they use."""

    items: tuple[Item, ...]
    classes: tuple[str, ...]
    root: str = ""

    def __len__(self) -> int:
        return len(self.items)

    @property
    def paths(self) -> list[str]:
        return [it.path for it in self.items]

    @property
    def labels(self) -> list[str | None]:
        return [it.label for it in self.items]

    @property
    def targets(self) -> list[int]:
        """Class indices of the items (every item must be labelled)."""
        index = {c: i for i, c in enumerate(self.classes)}
        out = []
        for it in self.items:
            if it.label is None:
                raise DatasetError(f"{display_path(it.path)}: has no label")
            out.append(index[it.label])
        return out

    @property
    def groups(self) -> list[str | None]:
        return [it.group for it in self.items]

    def subset(self, indices: Iterable[int]) -> Dataset:
        """The items at ``indices``, keeping the full class list."""
        return Dataset(tuple(self.items[i] for i in indices), self.classes, self.root)


def display_path(path: str | os.PathLike) -> str:
    """``path`` for a message or a terminal: bytes that are not UTF-8 as ``\\xNN``.

    Examples
    --------
    >>> display_path(os.fsdecode(b"bad_\\xff.wav"))
    'bad_\\\\xff.wav'
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        return path.decode("utf-8", "backslashreplace")
    try:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte
        return path.encode("utf-8", "backslashreplace").decode("utf-8")


def _is_audio(name: str, extensions: Sequence[str]) -> bool:
    # dot-prefixed names included: a clip must never vanish from a listing silently
    return name.lower().endswith(tuple(extensions))


def list_audio(
    root: str | os.PathLike, *, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[str]:
    """Every audio file below ``root`` (or ``root`` itself if it is a file), sorted.

    Every file whose name ends with one of ``extensions`` (case-insensitive)
    is listed, dot-prefixed and non-UTF-8 names included; the folders in
    :data:`IGNORED_DIRS` are not searched (see the module notes).  Symbolic
    links to folders are followed (each real folder searched once, so a link
    loop ends); a folder that cannot be read is named in a :class:`UserWarning`
    instead of being left out silently.

    Raises
    ------
    DatasetError
        If ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return [str(root)]
    if not root.is_dir():
        raise DatasetError(f"{display_path(root)}: no such file or directory")
    out, unreadable = [], []
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if d not in IGNORED_DIRS and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        out.extend(os.path.join(dirpath, f) for f in filenames if _is_audio(f, extensions))
    if unreadable:
        shown = "; ".join(f"{display_path(e.filename)} ({e.strerror or e})" for e in unreadable[:3])
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        warnings.warn(f"{len(unreadable)} folder(s) could not be searched for clips: {shown}{more}",
                      stacklevel=2)
    return sorted(out)


def _pick(columns: Sequence[str], wanted: Sequence[str], what: str, where: str) -> str:
    lower = {c.strip().lower(): c for c in columns}
    for w in wanted:
        if w in lower:
            return lower[w]
    raise DatasetError(f"{where}: no {what} column (expected one of {', '.join(wanted)}; got {', '.join(columns)})")


def _from_manifest(manifest: Path, root: Path | None) -> list[Item]:
    base = root if root is not None else manifest.parent
    try:
        with open(manifest, newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            pcol = _pick(columns, _PATH_COLUMNS, "path", display_path(manifest))
            lcol = _pick(columns, _LABEL_COLUMNS, "label", display_path(manifest))
            gcol = next((c for c in columns if c.strip().lower() == "group"), None)
            items = []
            for lineno, row in enumerate(reader, start=2):
                raw = row.get(pcol) or ""
                rel = raw.strip()
                if not rel:
                    raise DatasetError(f"{display_path(manifest)}:{lineno}: empty path")
                path = rel if os.path.isabs(rel) else str(base / rel)
                if raw != rel:  # ' clip.wav': keep the spaces when that is the file's real name
                    spaced = raw if os.path.isabs(raw) else str(base / raw)
                    if os.path.lexists(spaced) and not os.path.lexists(path):
                        path = spaced
                label = (row.get(lcol) or "").strip() or None
                group = (row.get(gcol) or "").strip() or None if gcol else None
                items.append(Item(path, label, group))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{display_path(manifest)}: cannot read manifest ({exc})") from exc
    return items


def discover(
    root: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    extensions: Sequence[str] = AUDIO_EXTENSIONS,
) -> Dataset:
    """List a labelled dataset.

    Parameters
    ----------
    root : path
        A folder with one sub-folder per class (``root/<class>/**/*.wav``), or
        a CSV manifest file.
    manifest : path, optional
        A CSV with a path column (``path``/``filename``/``file``/``name``), a
        label column (``label``/``class``/``category``/``target``) and an
        optional ``group`` column; relative paths are resolved against ``root``
        (when a folder) or the manifest's folder.  A path is stripped of
        surrounding spaces unless the file exists with them.
    extensions : sequence of str
        File-name endings listed (case-insensitive).

    Every clip below a class folder is listed (dot-prefixed and non-UTF-8
    names included; only :data:`IGNORED_DIRS` are not searched, and folders
    with those names are not classes); audio files directly in ``root`` have
    no class and are reported with a :class:`UserWarning`.

    Returns
    -------
    Dataset
        Items sorted by path; classes sorted by name.

    Raises
    ------
    DatasetError
        If nothing usable is found.
    """
    root_path = Path(root)
    if manifest is None and root_path.is_file() and root_path.suffix.lower() in (".csv", ".tsv"):
        manifest, root_path = root_path, None
    if manifest is not None:
        items = _from_manifest(Path(manifest), root_path)
        where = str(manifest)
    else:
        if not root_path.is_dir():
            raise DatasetError(f"{display_path(root_path)}: not a directory (expected one folder per class)")
        items = []
        try:
            entries = sorted(root_path.iterdir())
        except OSError as exc:
            raise DatasetError(f"{display_path(root_path)}: cannot list ({exc.strerror or exc})") from exc
        for sub in (p for p in entries if p.is_dir() and p.name not in IGNORED_DIRS):
            items.extend(Item(p, sub.name) for p in list_audio(sub, extensions=extensions))
        loose = [p.name for p in entries if p.is_file() and _is_audio(p.name, extensions)]
        if loose:
            shown = ", ".join(display_path(n) for n in loose[:3]) + (
                f" and {len(loose) - 3} more" if len(loose) > 3 else "")
            if not items:
                raise DatasetError(
                    f"{display_path(root_path)}: no class folders, only {len(loose)} audio file(s) "
                    f"directly in it ({shown}); expected one folder per class"
                )
            warnings.warn(
                f"{display_path(root_path)}: {len(loose)} audio file(s) directly in the dataset "
                f"folder have no class folder and are not used: {shown}",
                stacklevel=2,
            )
        where = str(root_path)
    if not items:
        raise DatasetError(f"{display_path(where)}: no audio files found (extensions: {' '.join(extensions)})")
    items.sort(key=lambda it: it.path)
    classes = tuple(sorted({it.label for it in items if it.label is not None}))
    return Dataset(tuple(items), classes, str(root_path) if root_path is not None else where)


def assign_groups(dataset: Dataset, pattern: str) -> Dataset:
    """Set each item's group from a regular expression on its file name.

    The group is the named group ``group`` if the pattern has one, else the
    first capture group, else the whole match.  ``{class}`` in the pattern is
    replaced by the item's escaped label first.  Example for FSDD
    (``{digit}_{speaker}_{n}.wav``): ``r"^\\d+_(?P<group>[a-z]+)_"``.

    Raises
    ------
    ParameterError
        If the pattern is not a valid regular expression.
    DatasetError
        If a file name does not match (naming the first few).
    """
    out, misses = [], []
    for it in dataset.items:
        pat = pattern.replace("{class}", re.escape(it.label or ""))
        try:
            m = re.search(pat, it.name)
        except re.error as exc:
            raise ParameterError(f"group pattern {pattern!r} is not a valid regex: {exc}") from exc
        if m is None:
            misses.append(it.path)
            continue
        if "group" in m.groupdict():
            g = m.group("group")
        elif m.groups():
            g = m.group(1)
        else:
            g = m.group(0)
        out.append(replace(it, group=g))
    if misses:
        shown = ", ".join(display_path(m) for m in misses[:3]) + (f" and {len(misses) - 3} more" if len(misses) > 3 else "")
        raise DatasetError(f"group pattern {pattern!r} does not match {len(misses)} file(s): {shown}")
    return Dataset(tuple(out), dataset.classes, dataset.root)
