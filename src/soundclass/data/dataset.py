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

Every file left out is named
----------------------------
A file is audio when its name ends with one of :data:`AUDIO_EXTENSIONS`
(every extension of what the decoders read: libsndfile's formats and FFmpeg's
M4A/MP4/MOV/3GP, WebM/Matroska, ASF/WMA, AMR, ADTS AAC, AC-3, WavPack, Monkey's
Audio, AVI) or, whatever its name, when its first bytes are an audio
container's signature (:func:`soundclass.audio.sniff.sniff`: RIFF/WAVE, FLAC,
Ogg, MP4 ``ftyp``, Matroska, ASF, ``#!AMR``, an ID3 tag...; a bare MPEG frame
sync, two bytes long, is too weak a sign and does not count).  Only files with
another extension are opened for that, 64 bytes each: nothing for a folder of
audio files, about 0.1 ms per other file on a local disk (2.2 s for 20,000
text files, cached, on a busy 2-core machine).  Every other file (``notes.txt``, ``labels.csv``) is *skipped*, and
:func:`list_folder` and :class:`Dataset` record it in ``skipped``, so that
``scan``, ``train``, ``evaluate`` and ``predict`` name it
(:func:`skipped_note`) instead of dropping it silently.
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

from soundclass.audio.sniff import sniff
from soundclass.errors import DatasetError, ParameterError

__all__ = [
    "AUDIO_EXTENSIONS",
    "IGNORED_DIRS",
    "Item",
    "Dataset",
    "Listing",
    "discover",
    "list_audio",
    "list_folder",
    "skipped_note",
    "assign_groups",
    "display_path",
]

#: File-name endings of audio files (lower case): what libsndfile and FFmpeg decode.
AUDIO_EXTENSIONS = (
    # libsndfile (soundfile), FFmpeg when libsndfile cannot open the file
    ".wav", ".wave", ".bwf", ".rf64", ".w64", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".mp2",
    ".mpa", ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".sd2", ".voc", ".htk", ".sph",
    ".nist", ".paf", ".svx", ".8svx", ".ircam", ".pvf", ".xi", ".sds", ".avr", ".wve",
    # FFmpeg (PyAV): phones, browsers, videos
    ".m4a", ".m4b", ".mp4", ".m4v", ".mov", ".3gp", ".3g2", ".aac", ".adts", ".webm", ".weba",
    ".mka", ".mkv", ".wma", ".asf", ".wmv", ".amr", ".awb", ".ac3", ".eac3", ".wv", ".ape", ".avi",
)

#: Containers whose signature (:func:`soundclass.audio.sniff.sniff`) lists a file of any
#: name; MP3, ADTS AAC and AC-3 are only a two-byte frame sync, too weak a sign on its own.
_SIGNED_CONTAINERS = frozenset({
    "WAV", "AIFF", "FLAC", "OGG", "CAF", "AU", "WAVPACK", "APE", "MP4", "WEBM", "MATROSKA",
    "ASF", "AMR", "AVI",
})
_SNIFF_BYTES = 64

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
    """Clips and the sorted class names they use.

    ``skipped`` holds the files found below ``root`` that are not audio (by
    name or content), sorted; empty for a manifest.
    """

    items: tuple[Item, ...]
    classes: tuple[str, ...]
    root: str = ""
    skipped: tuple[str, ...] = ()

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
        return Dataset(tuple(self.items[i] for i in indices), self.classes, self.root, self.skipped)


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


def _holds_audio(path: str) -> bool:
    """Whether the file's first bytes are an audio container's signature (see the module notes)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except OSError:
        return False
    return sniff(head).container in _SIGNED_CONTAINERS or head[:3] == b"ID3"


@dataclass(frozen=True)
class Listing:
    """What a folder holds: its audio files and the files left out.

    Attributes
    ----------
    paths : tuple of str
        Audio files (by name or content), sorted.
    skipped : tuple of str
        Every other file, sorted (named by :func:`skipped_note`).
    """

    paths: tuple[str, ...]
    skipped: tuple[str, ...] = ()


def list_folder(
    root: str | os.PathLike, *, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> Listing:
    """Every file below ``root`` (or ``root`` itself if it is a file): audio or skipped.

    A file is audio when its name ends with one of ``extensions``
    (case-insensitive) or its first bytes are an audio container's signature
    (see the module notes); dot-prefixed and non-UTF-8 names are listed; the
    folders in :data:`IGNORED_DIRS` are not searched.  Symbolic links to
    folders are followed (each real folder searched once, so a link loop
    ends); a folder that cannot be read is named in a :class:`UserWarning`
    instead of being left out silently.  A file given as ``root`` is listed
    whatever its name (the decoder says whether it is audio).

    Returns
    -------
    Listing

    Raises
    ------
    DatasetError
        If ``root`` does not exist.
    """
    root = Path(root)
    if root.is_file():
        return Listing((str(root),))
    if not root.is_dir():
        raise DatasetError(f"{display_path(root)}: no such file or directory")
    out, skipped, unreadable = [], [], []
    seen = {os.path.realpath(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable.append):
        keep = []
        for d in sorted(dirnames):
            real = os.path.realpath(os.path.join(dirpath, d))
            if d not in IGNORED_DIRS and real not in seen:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            path = os.path.join(dirpath, f)
            if _is_audio(f, extensions) or _holds_audio(path):
                out.append(path)
            else:
                skipped.append(path)
    if unreadable:
        shown = "; ".join(f"{display_path(e.filename)} ({e.strerror or e})" for e in unreadable[:3])
        more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
        warnings.warn(f"{len(unreadable)} folder(s) could not be searched for clips: {shown}{more}",
                      stacklevel=3)
    return Listing(tuple(sorted(out)), tuple(sorted(skipped)))


def list_audio(
    root: str | os.PathLike, *, extensions: Sequence[str] = AUDIO_EXTENSIONS
) -> list[str]:
    """Every audio file below ``root`` (or ``root`` itself if it is a file), sorted.

    The ``paths`` of :func:`list_folder` (same rules); the files it leaves
    out are in its ``skipped``.

    Raises
    ------
    DatasetError
        If ``root`` does not exist.
    """
    return list(list_folder(root, extensions=extensions).paths)


def skipped_note(skipped: Sequence[str], *, root: str | os.PathLike | None = None,
                 max_listed: int = 5) -> str | None:
    """The one line that names the files a listing left out, or ``None`` if none.

    Parameters
    ----------
    skipped : sequence of str
        :attr:`Listing.skipped` or :attr:`Dataset.skipped`.
    root : path, optional
        Names are shown relative to it.
    max_listed : int
        Names shown at most; the rest are counted.

    Examples
    --------
    >>> skipped_note(["d/a/notes.txt", "d/b.csv"], root="d")
    '2 file(s) skipped (not audio by extension or content): a/notes.txt, b.csv'
    """
    if not skipped:
        return None

    def name(p: str) -> str:
        if root is not None:
            try:
                p = os.path.relpath(p, root)
            except ValueError:  # another drive (Windows)
                pass
        return display_path(p)

    shown = ", ".join(name(p) for p in skipped[:max_listed])
    more = f" and {len(skipped) - max_listed} more" if len(skipped) > max_listed else ""
    return f"{len(skipped)} file(s) skipped (not audio by extension or content): {shown}{more}"


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
    skipped: list[str] = []
    if manifest is not None:
        items = _from_manifest(Path(manifest), root_path)
        where = str(manifest)
    else:
        if not root_path.is_dir():
            raise DatasetError(f"{display_path(root_path)}: not a directory (expected one folder per class)")
        items, skipped = [], []
        try:
            entries = sorted(root_path.iterdir())
        except OSError as exc:
            raise DatasetError(f"{display_path(root_path)}: cannot list ({exc.strerror or exc})") from exc
        for sub in (p for p in entries if p.is_dir() and p.name not in IGNORED_DIRS):
            listing = list_folder(sub, extensions=extensions)
            items.extend(Item(p, sub.name) for p in listing.paths)
            skipped.extend(listing.skipped)
        files = [p for p in entries if p.is_file()]
        audio = {p.name for p in files if _is_audio(p.name, extensions) or _holds_audio(str(p))}
        loose = [p.name for p in files if p.name in audio]
        skipped.extend(str(p) for p in files if p.name not in audio)
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
        note = skipped_note(skipped, root=root_path) if manifest is None else None
        raise DatasetError(f"{display_path(where)}: no audio files found (extensions: {' '.join(extensions)}"
                           " or an audio signature)" + (f"; {note}" if note else ""))
    items.sort(key=lambda it: it.path)
    classes = tuple(sorted({it.label for it in items if it.label is not None}))
    return Dataset(tuple(items), classes, str(root_path) if root_path is not None else where,
                   tuple(sorted(skipped)) if manifest is None else ())


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
    return replace(dataset, items=tuple(out))
