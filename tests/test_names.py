"""Dataset listing: hostile file names (dot-prefixed, not UTF-8, CR/LF/tab, spaces) and the files left out."""

from __future__ import annotations

import csv
import os
import sys
import warnings

import numpy as np
import pytest

from soundclass.data.dataset import (
    AUDIO_EXTENSIONS,
    IGNORED_DIRS,
    assign_groups,
    discover,
    display_path,
    list_audio,
    list_folder,
    skipped_note,
)
from soundclass.errors import DatasetError
from soundclass.inference.predictions import Predictions
from soundclass.inference.submission import failed_list_path, write_submission

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or sys.getfilesystemencoding().lower() not in ("utf-8", "utf8"),
    reason="byte file names need a POSIX file system with the UTF-8 file-system encoding",
)

BAD = b"bad_\xff\xfe_name.wav"  # legal on Linux, not UTF-8
HOSTILE = [BAD, b".hidden.wav", b"..\\..\\evil.wav", b"bare\rcr.wav", b"new\nline.wav",
           b"tab\there.wav", b"=formula.wav", b" spaced .WAV", "ünï.wav".encode()]


def _touch(folder: bytes, name: bytes) -> bytes:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    with open(path, "wb") as fh:
        fh.write(b"RIFF")  # listing never decodes
    return path


def _names(paths):
    return sorted(os.fsencode(os.path.basename(p)) for p in paths)


def test_list_audio_lists_every_name(tmp_path):
    root = os.fsencode(tmp_path)
    for name in HOSTILE:
        _touch(root, name)
    _touch(root, b"notes.txt")
    found = list_audio(tmp_path)
    assert all(isinstance(p, str) for p in found)
    assert _names(found) == sorted(HOSTILE)
    assert all(os.path.isfile(p) for p in found)  # the str paths open the real files


def test_list_audio_searches_dot_folders_but_not_tool_folders(tmp_path):
    root = os.fsencode(tmp_path)
    _touch(os.path.join(root, b".hidden_folder"), b"a.wav")
    _touch(os.path.join(root, b"\xff_folder"), b"b.wav")
    for tool in IGNORED_DIRS:
        _touch(os.path.join(root, os.fsencode(tool)), b"c.wav")
    found = list_audio(tmp_path)
    assert sorted(os.fsencode(os.path.relpath(p, tmp_path)) for p in found) == [
        b".hidden_folder/a.wav", b"\xff_folder/b.wav"]


def test_discover_labels_hostile_names_and_classes(tmp_path):
    root = os.fsencode(tmp_path)
    for name in HOSTILE:
        _touch(os.path.join(root, b"dog"), name)
    _touch(os.path.join(root, b"c\xe9t"), b"x.wav")  # latin-1 class folder name
    _touch(os.path.join(root, b".git"), b"y.wav")
    ds = discover(tmp_path)
    assert len(ds) == len(HOSTILE) + 1
    assert ds.classes == tuple(sorted(["dog", os.fsdecode(b"c\xe9t")]))
    assert _names(it.path for it in ds.items if it.label == "dog") == sorted(HOSTILE)


def test_discover_warns_about_clips_without_class_folder(tmp_path):
    root = os.fsencode(tmp_path)
    _touch(os.path.join(root, b"dog"), b"a.wav")
    _touch(root, b".loose.wav")
    _touch(root, BAD)
    with pytest.warns(UserWarning, match=r"2 audio file\(s\) directly in the dataset folder") as rec:
        discover(tmp_path)
    message = str(rec[0].message)
    assert ".loose.wav" in message and "bad_\\xff\\xfe_name.wav" in message
    message.encode("utf-8")  # printable anywhere: no lone surrogates


def test_flat_folder_is_an_error_not_a_warning(tmp_path):
    _touch(os.fsencode(tmp_path), b".only.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DatasetError, match=r"no class folders, only 1 audio file\(s\).*\.only\.wav"):
            discover(tmp_path)


def test_no_warning_when_every_clip_has_a_class(tmp_path):
    _touch(os.path.join(os.fsencode(tmp_path), b"dog"), b"a.wav")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(discover(tmp_path)) == 1


def test_manifest_with_non_utf8_and_spaced_names(tmp_path):
    root = os.fsencode(tmp_path)
    _touch(root, BAD)
    _touch(root, b" spaced.wav")
    _touch(root, b"plain.wav")
    manifest = tmp_path / "labels.csv"
    manifest.write_bytes(b"path,label\n" + BAD + b",dog\n spaced.wav,cat\n plain.wav , cat\n")
    ds = discover(manifest)
    assert _names(ds.paths) == sorted([b" spaced.wav", BAD, b"plain.wav"])
    assert all(os.path.isfile(p) for p in ds.paths)
    assert ds.labels.count("cat") == 2


def test_display_path():
    assert display_path(os.fsdecode(BAD)) == "bad_\\xff\\xfe_name.wav"
    assert display_path(BAD) == "bad_\\xff\\xfe_name.wav"
    assert display_path("ünï.wav") == "ünï.wav"
    assert display_path("x\ud800.wav") == "x\\ud800.wav"  # not an escaped byte: still printable


def test_listing_to_submission_keeps_every_file(tmp_path):
    data = os.fsencode(tmp_path / "test")
    for name in HOSTILE:
        _touch(data, name)
    paths = list_audio(os.fsdecode(data))
    proba = np.tile([0.9, 0.1], (len(paths), 1))
    bad_path = next(p for p in paths if os.fsencode(p).endswith(BAD))
    proba[paths.index(bad_path)] = np.nan
    preds = Predictions(tuple(paths), proba, {bad_path: "cannot be opened"}, ("a", "b"))
    out = write_submission(preds, tmp_path / "submit.csv")
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as fh:
        rows = list(csv.reader(fh))
    assert [os.fsencode(r[0]) for r in rows[1:]] == [os.fsencode(os.path.basename(p)) for p in paths]
    with open(failed_list_path(out), newline="", encoding="utf-8", errors="surrogateescape") as fh:
        assert list(csv.reader(fh))[1:] == [[bad_path, "cannot be opened"]]


def test_leakage_message_is_printable_with_non_utf8_names():
    from soundclass.data.splits import leakage_warning

    names = [os.fsdecode(b"spk\xff_%d.wav" % (i % 2)) for i in range(4)]
    msg = leakage_warning(names, [0, 1], [2, 3], hashes=["h0", "h1", "h0", "h9"])
    assert msg is not None and "--group-pattern" in msg and "byte-identical" in msg
    msg.encode("utf-8")  # no lone surrogates left (the suggested pattern quotes the name)


def test_checkpoint_keeps_non_utf8_class_names(tmp_path):
    from soundclass.checkpoint.format import META_NAME, load_checkpoint, save_checkpoint
    from soundclass.models import create_model, model_spec

    classes = (os.fsdecode(b"c\xe9t"), "dog")  # a latin-1 class folder name
    spec = model_spec("seed-lstm")
    model = create_model("seed-lstm", n_classes=2, n_features=spec.feature.n_features)
    out = save_checkpoint(tmp_path / "ck", model, model_name="seed-lstm", model_kwargs={},
                          feature=spec.feature, classes=classes, train_config={}, clip_frames=8)
    (out / META_NAME).read_text(encoding="utf-8")  # model.json stays valid UTF-8 (JSON escapes)
    assert load_checkpoint(out).classes == classes


def test_symlinked_folders_followed_once_and_loops_end(tmp_path):
    real = tmp_path / "elsewhere"
    _touch(os.fsencode(real), b"linked.wav")
    root = tmp_path / "data"
    _touch(os.fsencode(root / "dog"), b"a.wav")
    (root / "dog" / "more").symlink_to(real, target_is_directory=True)
    (root / "dog" / "loop").symlink_to(root, target_is_directory=True)
    found = list_audio(root)
    assert _names(found) == [b"a.wav", b"linked.wav"]


def test_unreadable_folder_is_named(tmp_path, monkeypatch):
    _touch(os.fsencode(tmp_path / "ok"), b"a.wav")
    _touch(os.fsencode(tmp_path / "locked"), b"b.wav")
    real_scandir = os.scandir

    def scandir(path="."):  # what a chmod 000 folder does for a non-root user
        if os.fspath(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.warns(UserWarning, match=r"1 folder\(s\) could not be searched.*locked \(Permission denied\)"):
        assert _names(list_audio(tmp_path)) == [b"a.wav"]


def test_extensions_cover_what_the_decoders_read():
    for ext in (".m4a", ".mp4", ".mov", ".3gp", ".aac", ".webm", ".mka", ".wma", ".amr", ".opus",
                ".caf", ".ac3", ".wv", ".sph"):
        assert ext in AUDIO_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in AUDIO_EXTENSIONS)
    assert len(set(AUDIO_EXTENSIONS)) == len(AUDIO_EXTENSIONS)


def test_list_folder_names_what_it_leaves_out(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a.wav").write_bytes(b"RIFF")
    (d / "sub" / "phone.M4A").write_bytes(b"\0\0\0\x20ftypM4A ")
    (d / "notes.txt").write_text("no audio here")
    (d / "sub" / "labels.csv").write_text("path,label\n")
    (d / "recording").write_bytes(b"RIFF\x24\0\0\0WAVEfmt ")  # no extension: a WAV by content
    (d / "clip.dat").write_bytes(b"ID3\x04\0\0\0\0\0\0")  # MP3 with an ID3 tag
    (d / "sync.bin").write_bytes(b"\xff\xfb\x90\x00" + bytes(60))  # a bare frame sync: too weak
    (d / "empty.json").write_bytes(b"")
    listing = list_folder(d)
    assert [os.path.relpath(p, d) for p in listing.paths] == [
        "a.wav", "clip.dat", "recording", os.path.join("sub", "phone.M4A")]
    assert [os.path.relpath(p, d) for p in listing.skipped] == [
        "empty.json", "notes.txt", os.path.join("sub", "labels.csv"), "sync.bin"]
    assert list_audio(d) == list(listing.paths)
    assert list_folder(d / "notes.txt").paths == (str(d / "notes.txt"),)  # a file given is listed


def test_skipped_note_counts_and_caps():
    assert skipped_note([]) is None
    paths = [f"/data/x/f{i}.txt" for i in range(7)]
    note = skipped_note(paths, root="/data", max_listed=3)
    assert note == ("7 file(s) skipped (not audio by extension or content): "
                    "x/f0.txt, x/f1.txt, x/f2.txt and 4 more")


def test_discover_records_skipped_files(tmp_path):
    for c in ("a", "b"):
        _touch(os.fsencode(tmp_path / c), b"clip.wav")
    (tmp_path / "a" / "notes.txt").write_text("x")
    (tmp_path / "README.md").write_text("x")
    ds = discover(tmp_path)
    assert len(ds) == 2
    assert ds.skipped == (str(tmp_path / "README.md"), str(tmp_path / "a" / "notes.txt"))
    assert ds.subset([0]).skipped == ds.skipped
    assert assign_groups(ds, r"(clip)").skipped == ds.skipped
    # nothing usable: the error names what was found instead
    (tmp_path / "c" / "x").mkdir(parents=True)
    (tmp_path / "c" / "x" / "only.txt").write_text("x")
    with pytest.raises(DatasetError, match=r"no audio files found .*1 file\(s\) skipped .*only\.txt"):
        discover(tmp_path / "c")
