"""Dataset scan on a generated folder-per-class dataset with every kind of bad file."""

from __future__ import annotations

import csv
import json
import math
import shutil
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundclass.data import scan as scan_mod
from soundclass.data.scan import (
    ScanReport,
    ScanRow,
    format_summary,
    scan,
    scan_file,
    write_scan_report,
)
from soundclass.errors import DatasetError, ParameterError
from soundclass.util import pool as pool_mod
from soundclass.util.executors import SerialExecutor

SR = 8000


def _noise(seconds: float, *, seed: int, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amp * rng.uniform(-1, 1, int(sr * seconds))).astype(np.float32)


def make_messy_dataset(root: Path) -> dict[str, dict]:
    """Three classes with good clips and bad ones; returns the expectation per file name."""
    for c in ("crunch", "fizz", "slurp"):
        (root / c).mkdir(parents=True)
    expect: dict[str, dict] = {}

    def good(rel: str, y, sr=SR, subtype="PCM_16", **flags):
        sf.write(root / rel, y, sr, subtype=subtype)
        expect[rel] = {"ok": True, **flags}

    def bad(rel: str, data: bytes, reason: str, **flags):
        (root / rel).write_bytes(data)
        expect[rel] = {"ok": False, "reason": reason, **flags}

    for i in range(3):
        good(f"crunch/good_{i}.wav", _noise(0.5, seed=i))
    shutil.copyfile(root / "crunch/good_0.wav", root / "crunch/good_0_copy.wav")
    expect["crunch/good_0_copy.wav"] = {"ok": True}
    shutil.copyfile(root / "crunch/good_1.wav", root / "fizz/same_as_crunch_1.wav")
    expect["fizz/same_as_crunch_1.wav"] = {"ok": True}
    bad("crunch/empty.wav", b"", "empty file")
    bad("crunch/random.wav", np.random.default_rng(7).bytes(3000), "not a readable audio file")
    sf.write(root / "slurp/truncated.wav", _noise(1.0, seed=3), SR, subtype="PCM_16")
    data = (root / "slurp/truncated.wav").read_bytes()
    (root / "slurp/truncated.wav").write_bytes(data[: len(data) // 2])  # kept, flagged
    expect["slurp/truncated.wav"] = {"ok": True, "truncated": True}
    y_nan = _noise(0.5, seed=4)
    y_nan[100] = np.nan
    sf.write(root / "slurp/nan.wav", y_nan, SR, subtype="FLOAT")
    expect["slurp/nan.wav"] = {"ok": False, "reason": "non-finite", "nonfinite": True}
    good("slurp/silent.wav", np.zeros(SR, dtype=np.float32), silent=True)
    good("slurp/quiet.wav", _noise(0.5, seed=5, amp=0.01))
    good("fizz/stereo.wav", np.stack([_noise(0.5, seed=6), _noise(0.5, seed=7)], axis=1),
         multichannel=True)
    good("fizz/hi_rate.flac", _noise(0.5, seed=8, sr=16000), sr=16000)
    good("fizz/short.wav", _noise(0.05, seed=9), very_short=True)
    square = np.sign(np.sin(2 * np.pi * 50 * np.arange(SR) / SR)).astype(np.float32)
    good("fizz/clipped.wav", square, clipped=True)
    over = _noise(0.5, seed=10)
    over[5] = 1.5  # float files can go beyond full scale
    good("fizz/over.wav", over, subtype="FLOAT", clipped=True)
    return expect


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    root = tmp_path_factory.mktemp("messy") / "data"
    expect = make_messy_dataset(root)
    return root, expect


@pytest.fixture(scope="module")
def report(messy):
    root, _ = messy
    return scan(root, n_jobs=2, progress=False)


def _rel(row: ScanRow, root: Path) -> str:
    return Path(row.path).relative_to(root).as_posix()


def test_every_file_gets_a_row_with_correct_flags_and_reasons(messy, report):
    root, expect = messy
    rows = {_rel(r, root): r for r in report.rows}
    assert set(rows) == set(expect)
    assert [r.path for r in report.rows] == sorted(r.path for r in report.rows)
    for rel, exp in expect.items():
        row = rows[rel]
        assert row.ok == exp["ok"], (rel, row.error)
        assert row.label == rel.split("/")[0]
        if not exp["ok"]:
            assert exp["reason"] in row.error, (rel, row.error)
        for flag in scan_mod.FLAGS:
            assert getattr(row, flag) == exp.get(flag, False), (rel, flag)


def test_header_and_level_values(messy, report):
    root, _ = messy
    rows = {_rel(r, root): r for r in report.rows}
    hi = rows["fizz/hi_rate.flac"]
    assert (hi.format, hi.subtype, hi.sr, hi.channels, hi.frames) == ("FLAC", "PCM_16", 16000, 1, 8000)
    assert hi.duration == pytest.approx(0.5)
    st = rows["fizz/stereo.wav"]
    assert st.channels == 2 and st.multichannel
    y, _ = sf.read(root / "crunch/good_2.wav", dtype="float32")
    good = rows["crunch/good_2.wav"]
    assert good.peak_dbfs == pytest.approx(20 * np.log10(np.abs(y).max()), abs=1e-4)
    rms = np.sqrt(np.mean(np.square(y, dtype=np.float64)))
    assert good.rms_dbfs == pytest.approx(20 * np.log10(rms), abs=1e-4)
    assert rows["slurp/silent.wav"].peak_dbfs == -math.inf
    assert rows["crunch/empty.wav"].size_bytes == 0 and math.isnan(rows["crunch/empty.wav"].duration)
    nan_row = rows["slurp/nan.wav"]
    assert nan_row.sr == SR and nan_row.subtype == "FLOAT"  # header still reported


def test_summary_counts_duplicates_and_imbalance(report):
    s = report.summary()
    assert s["files"] == 16 and s["bad"] == 3 and s["ok"] == 13
    assert report.class_counts == {"crunch": 6, "fizz": 6, "slurp": 4}
    # the cut file counts with the half second it still holds
    assert s["classes"]["slurp"] == {"files": 4, "ok": 3, "bad": 1,
                                     "total_duration": 1.999, "mean_duration": 0.6662}
    assert report.imbalance_ratio == pytest.approx(6 / 4)
    assert s["sample_rates"] == {"8000": 13, "16000": 1}  # empty/random have no header
    assert s["channels"] == {"1": 13, "2": 1}
    assert s["encodings"]["WAV/PCM_16"] == 11 and s["encodings"]["WAV/FLOAT"] == 2
    assert s["flags"] == {"silent": 1, "clipped": 2, "very_short": 1, "nonfinite": 1,
                          "multichannel": 1, "truncated": 1}
    dups = report.duplicates
    assert len(dups) == 2 and s["duplicate_groups_cross_class"] == 1
    assert dups[0]["cross_class"] and dups[0]["labels"] == ["crunch", "fizz"]
    assert not dups[1]["cross_class"] and len(dups[1]["paths"]) == 2
    assert {Path(p).name for p, _ in report.bad_files} == {
        "empty.wav", "random.wav", "nan.wav"}
    json.dumps(s, allow_nan=False)  # JSON-ready


def test_parallel_serial_and_executor_give_the_same_rows(messy, report):
    root, _ = messy
    serial = scan(root, n_jobs=1, progress=False)
    with SerialExecutor() as ex:
        via_executor = scan(root, n_jobs=3, progress=False, executor=ex)

    def strip(rows):  # NaN != NaN: compare the text forms
        return [tuple(str(v) for v in r.__dict__.values()) for r in rows]

    assert strip(serial.rows) == strip(report.rows) == strip(via_executor.rows)


def test_a_crashing_chunk_becomes_bad_rows(messy, monkeypatch):
    root, _ = messy

    class Exploding(SerialExecutor):
        def submit(self, fn, /, *args, **kwargs):
            chunk = args[1]  # _run_chunk(fn, chunk)
            if any("fizz" in p for p, _ in chunk):
                def boom(*a, **k):
                    raise MemoryError("worker died")
                return super().submit(boom)
            return super().submit(fn, *args, **kwargs)

    rep = scan(root, n_jobs=8, progress=False, executor=Exploding())
    assert len(rep) == 16
    fizz = [r for r in rep.rows if r.label == "fizz"]
    assert fizz and all("worker failed: MemoryError" in r.error for r in fizz)
    assert all(r.ok for r in rep.rows if r.label == "crunch" and "good" in r.name)


class _DyingPool(SerialExecutor):
    """A pool whose worker dies on any chunk holding ``killer``; it stays dead after."""

    created = 0

    def __init__(self, killer: str):
        super().__init__()
        self.killer, self.dead = killer, False
        type(self).created += 1

    def submit(self, fn, /, *args, **kwargs):
        if self.dead or any(self.killer in p for p, _ in args[1]):  # _run_chunk(fn, chunk)
            self.dead = True
            future = Future()
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return future
        return super().submit(fn, *args, **kwargs)


def test_a_dying_worker_only_loses_its_own_file(messy, monkeypatch):
    root, expect = messy
    _DyingPool.created = 0
    monkeypatch.setattr(pool_mod, "make_executor",
                        lambda spec, n_jobs=None: _DyingPool("quiet.wav"))
    rep = scan(root, n_jobs=4, progress=False)
    assert len(rep) == len(expect)
    crashed = [r for r in rep.rows if r.error and "worker process died" in r.error]
    assert [r.name for r in crashed] == ["quiet.wav"]
    assert sum(r.ok for r in rep.rows) == sum(e["ok"] for e in expect.values()) - 1
    assert _DyingPool.created >= 2  # the first pool, then fresh ones for the retry
    with _DyingPool("quiet.wav") as ex:  # a caller's broken pool: its files are isolated too
        rep2 = scan(root, n_jobs=4, progress=False, executor=ex)
    assert len(rep2) == len(expect)
    assert [r.name for r in rep2.rows if r.error and "worker process died" in r.error] == ["quiet.wav"]
    assert sum(r.ok for r in rep2.rows) == sum(r.ok for r in rep.rows)


def test_scan_file_never_raises(tmp_path, monkeypatch):
    path = tmp_path / "a.wav"
    sf.write(path, _noise(0.2, seed=0), SR)

    def broken_load(*args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(scan_mod.audio, "decode", broken_load)
    row = scan_file(path, label="x")
    assert not row.ok and row.error == "unexpected RuntimeError: decoder exploded"
    assert row.sr == SR and row.sha256
    missing = scan_file(tmp_path / "nope.wav")
    assert not missing.ok and "cannot read file" in missing.error


def test_clipping_levels(tmp_path):
    square = np.sign(np.sin(2 * np.pi * 50 * np.arange(SR) / SR)).astype(np.float32)
    sf.write(tmp_path / "u8.wav", square, SR, subtype="PCM_U8")  # peaks at 127/128
    assert scan_file(tmp_path / "u8.wav").clipped
    sf.write(tmp_path / "loud.wav", 0.95 * square, SR, subtype="PCM_16")
    assert not scan_file(tmp_path / "loud.wav").clipped
    assert scan_file(tmp_path / "loud.wav", clip_level=0.9).clipped
    spikes = np.zeros(SR, dtype=np.float32)
    spikes[::100] = 1.0  # isolated full-scale samples are peaks, not clipping
    sf.write(tmp_path / "spikes.wav", spikes, SR, subtype="PCM_16")
    row = scan_file(tmp_path / "spikes.wav")
    assert not row.clipped and row.peak_dbfs == pytest.approx(0.0, abs=1e-3)


def test_manifest_input(messy, tmp_path):
    root, _ = messy
    manifest = tmp_path / "train.csv"
    with open(manifest, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "label"])
        w.writerow(["crunch/good_0.wav", "crunch"])
        w.writerow(["slurp/nan.wav", "slurp"])
        w.writerow(["gone/missing.wav", "slurp"])
    rep = scan(root, manifest=manifest, n_jobs=1, progress=False)
    assert rep.class_counts == {"crunch": 1, "slurp": 2}
    assert [r.ok for r in rep.rows] == [True, False, False]
    assert "cannot read file" in rep.rows[1].error  # gone/missing.wav sorts before slurp/


def test_flat_folder_is_scanned_unlabelled(tmp_path):
    for i in range(3):
        sf.write(tmp_path / f"test_{i}.wav", _noise(0.1, seed=i), SR)
    rep = scan(tmp_path, n_jobs=1, progress=False)
    assert len(rep) == 3 and rep.classes == ()
    assert rep.class_counts == {"(unlabelled)": 3}
    assert "(unlabelled)" in format_summary(rep)


def test_errors(tmp_path):
    with pytest.raises(DatasetError, match="no such file"):
        scan(tmp_path / "missing", progress=False)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no audio files"):
        scan(tmp_path / "empty", progress=False)
    with pytest.raises(ParameterError, match="n_jobs"):
        scan(tmp_path, n_jobs=0, progress=False)
    with pytest.raises(ParameterError, match="n_fft"):
        scan(tmp_path, n_fft=0, progress=False)


def test_write_report_and_text_summary(report, tmp_path):
    paths = write_scan_report(report, tmp_path / "out")
    assert set(paths) == {"files", "bad_files", "summary", "class_counts", "durations", "near_duplicates"}
    with open(paths["files"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and set(rows[0]) == {f for f in ScanRow.__dataclass_fields__}
    silent = next(r for r in rows if r["name"] == "silent.wav")
    assert silent["silent"] == "1" and silent["peak_dbfs"] == "-inf" and silent["error"] == ""
    with open(paths["bad_files"], newline="") as fh:
        bad = list(csv.DictReader(fh))
    assert sorted(Path(b["path"]).name for b in bad) == ["empty.wav", "nan.wav", "random.wav"]
    assert all(b["reason"] for b in bad)
    summary = json.loads(Path(paths["summary"]).read_text())
    assert summary["bad"] == 3 and summary["duplicate_groups"] == 2
    for key in ("class_counts", "durations"):
        data = Path(paths[key]).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    text = format_summary(report)
    assert "16 files in 3 classes" in text and "3 bad" in text
    assert "imbalance 1.5:1" in text
    assert "ACROSS CLASSES" in text and "[cross-class: crunch, fizz]" in text
    assert "empty.wav: empty file" in text


def test_empty_report_summary():
    rep = ScanReport((), root="x")
    s = rep.summary()
    assert s["files"] == 0 and s["duration"]["mean"] is None and math.isnan(rep.imbalance_ratio)


def test_real_fsdd_whole(fsdd_dir):
    rep = scan(fsdd_dir, n_jobs=2, progress=False, near_duplicates=None)  # the search: test_leakproof_split
    s = rep.summary()
    assert s["files"] == 3000 and s["bad"] == 0
    assert rep.class_counts == {str(d): 300 for d in range(10)}
    assert s["sample_rates"] == {"8000": 3000} and s["encodings"] == {"WAV/PCM_16": 3000}
    # FSDD holds many clips shorter than one 2048-sample window at 8 kHz
    assert 0 < s["flags"]["very_short"] < 3000
    assert 0.1 < s["duration"]["min"] < s["duration"]["median"] < 1.0 < s["duration"]["max"]


def test_real_donateacry(donateacry_dir, tmp_path):
    rep = scan(donateacry_dir, n_jobs=2, progress=False)  # with the near-duplicate search (seconds)
    s = rep.summary()
    assert s["duplicate_groups"] == 0 and s["near_duplicate_pairs"] == 0  # 457 distinct recordings
    counts = rep.class_counts
    assert sum(counts.values()) == 457 and len(counts) == 5
    assert rep.imbalance_ratio == pytest.approx(max(counts.values()) / min(counts.values()))
    assert rep.imbalance_ratio > 10
    paths = write_scan_report(rep, tmp_path)
    assert Path(paths["class_counts"]).stat().st_size > 10_000
