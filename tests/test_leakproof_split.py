"""Leak-proof splits: exact and near copies (OGG, MP3, gain, trim, resampled) never straddle train/val.

Through the real ``train`` path (a tiny registered test model, one epoch) on a
generated folder-per-class dataset in which some recordings are stored several
times; and ``scan`` listing the copies in ``near_duplicates.csv``.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from _training_models import E2E, registered
from soundclass.audio import resample
from soundclass.data.dataset import discover
from soundclass.data.scan import format_summary, scan, write_scan_report
from soundclass.data.synth import DEMO_CLASSES, synthesize_clip
from soundclass.training import TrainConfig, train
from soundclass.training.grouping import split_leakage, tie_duplicates

SR = 16000
HAS_MP3 = "MP3" in sf.available_formats()


@pytest.fixture(scope="module", autouse=True)
def _tiny_models():
    with registered():
        yield


def _write_copies(folder, stem: str, y: np.ndarray) -> list[str]:
    """The copies of one recording; returns their file names."""
    n = y.size
    sf.write(folder / f"{stem}_copy_ogg.ogg", y, SR, format="OGG", subtype="VORBIS")
    sf.write(folder / f"{stem}_copy_gain.wav", 0.3 * y, SR, subtype="PCM_16")
    sf.write(folder / f"{stem}_copy_trim.wav", y[n // 10:], SR, subtype="PCM_16")
    sf.write(folder / f"{stem}_copy_44k.wav", resample(y, orig_sr=SR, target_sr=44100), 44100, subtype="PCM_16")
    shutil.copyfile(folder / f"{stem}.wav", folder / f"zz_{stem}_exact.wav")  # byte-identical
    names = [f"{stem}_copy_ogg.ogg", f"{stem}_copy_gain.wav", f"{stem}_copy_trim.wav",
             f"{stem}_copy_44k.wav", f"zz_{stem}_exact.wav"]
    if HAS_MP3:
        sf.write(folder / f"{stem}_copy_mp3.mp3", y, SR, format="MP3", subtype="MPEG_LAYER_III")
        names.append(f"{stem}_copy_mp3.mp3")
    return names


@pytest.fixture(scope="module")
def copies_dataset(tmp_path_factory):
    """4 classes x 5 distinct recordings; 2 recordings per class also stored as copies."""
    root = tmp_path_factory.mktemp("copies")
    families: dict[str, list[str]] = {}
    for label in DEMO_CLASSES:
        folder = root / label
        folder.mkdir()
        for source in range(5):
            stem = f"{label}_s{source}"
            y = synthesize_clip(label, source=source, n=0, sr=SR, seed=0)
            sf.write(folder / f"{stem}.wav", y, SR, subtype="PCM_16")
            if source < 2:
                families[str(folder / f"{stem}.wav")] = [str(folder / c) for c in _write_copies(folder, stem, y)]
    return root, families


def _side(split: dict) -> dict[str, str]:
    return {**{p: "train" for p in split["train"]}, **{p: "val" for p in split["val"]}}


@pytest.mark.parametrize("seed", [0, 1])
def test_train_keeps_every_copy_on_the_side_of_its_original(tmp_path, copies_dataset, seed):
    root, families = copies_dataset
    dataset = discover(root)
    cfg = TrainConfig(model=E2E, n_jobs=1, epochs=1, val_size=0.3, seed=seed, cache_dir=str(tmp_path / "cache"))
    res = train(dataset, cfg, out_dir=tmp_path / "run", progress=False)
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    side = _side(split)
    assert split["val"] and split["train"]
    for original, copies in families.items():
        assert {side[c] for c in copies} == {side[original]}, original
    dup = split["duplicates"]
    per_family = 1 + len(next(iter(families.values())))
    assert dup["tied_clips"] == len(families) * per_family
    assert dup["duplicate_sets"] == len(families)
    assert dup["exact_duplicate_sets"] == len(families)
    # distinct recordings of one class are never tied: every pair is within one family
    family_of = {p: o for o, cs in families.items() for p in (o, *cs)}
    for pair in dup["near_duplicates"]:
        assert family_of.get(pair["path_a"]) is not None
        assert family_of.get(pair["path_a"]) == family_of.get(pair["path_b"])
    assert any(w.startswith(f"tied {dup['tied_clips']} clips in {len(families)} duplicate sets") for w in res.warnings)
    assert not any("byte-identical to a training clip" in w for w in res.warnings)
    # fingerprints were cached by content hash in the feature cache folder
    assert list((tmp_path / "cache").glob("fingerprints/*/*/*.npy"))


def test_random_split_leaks_without_ties_and_not_with_them(copies_dataset):
    """The ties are what keeps copies together: a plain split of this data does leak."""
    from soundclass.data.splits import holdout

    root, families = copies_dataset
    dataset = discover(root)
    paths = list(dataset.paths)
    ties = tie_duplicates(paths, near_duplicates=0.835)
    y = dataset.targets
    leaks = [split_leakage(ties, *holdout(y, test_size=0.3, seed=s)) for s in range(5)]
    assert max(leaks) > 0
    for s in range(5):
        assert split_leakage(ties, *holdout(y, test_size=0.3, groups=ties.groups, seed=s)) == 0
    off = tie_duplicates(paths, near_duplicates=0.0)  # --no-near-duplicates: exact copies only
    assert off.n_tied_clips == 2 * len(families) and not off.near_pairs


def test_no_near_duplicates_flag_is_derived_from_the_setting():
    from soundclass.cli import build_parser

    args = build_parser().parse_args(["train", "data", "--no-near-duplicates"])
    assert args.near_duplicates == 0.0
    args = build_parser().parse_args(["train", "data", "--near-duplicates", "0.9", "--unknown-precision", "0.95"])
    assert args.near_duplicates == 0.9 and args.unknown_precision == 0.95


def test_scan_lists_near_duplicates(tmp_path, copies_dataset):
    root, families = copies_dataset
    report = scan(root, n_jobs=1, progress=False)
    paths = write_scan_report(report, tmp_path / "scan")
    with open(paths["near_duplicates"], newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"path_a", "path_b", "score"}
    family_of = {p: o for o, cs in families.items() for p in (o, *cs)}
    listed = {frozenset((r["path_a"], r["path_b"])) for r in rows}
    for r in rows:  # only copies of one recording, at or above the threshold
        assert family_of.get(r["path_a"]) == family_of.get(r["path_b"]) is not None
        assert float(r["score"]) >= 0.835
    for copies in families.values():  # every non-exact copy is paired with something of its family
        for c in copies:
            if "_exact" not in c:
                assert any(c in pair for pair in listed), c
    summary = json.loads(open(paths["summary"], encoding="utf-8").read())
    assert summary["near_duplicate_pairs"] == len(rows)
    assert f"{len(rows)} pair(s)" in format_summary(report)
    off = scan(root, n_jobs=1, progress=False, near_duplicates=None)
    assert off.near_duplicates == () and "Near duplicates" not in format_summary(off)
