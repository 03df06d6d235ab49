"""``soundclass show`` and ``soundclass scan`` through ``soundclass.cli.main``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from soundclass.cli import main

SR = 8000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def dataset(tmp_path):
    """Two classes of noise clips, one undecodable file and one NaN file."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for c, n in (("apple", 3), ("chips", 2)):
        (root / c).mkdir(parents=True)
        for i in range(n):
            sf.write(root / c / f"{c}_{i}.wav", 0.2 * rng.uniform(-1, 1, SR // 2), SR)
    (root / "chips" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    y = rng.uniform(-0.1, 0.1, SR // 4).astype(np.float32)
    y[3] = np.inf
    sf.write(root / "apple" / "inf.wav", y, SR, subtype="FLOAT")
    return root


def test_help_texts(capsys):
    for command, options in (
        ("show", ["--sr", "--n-fft", "--hop-length", "--n-mels", "--n-mfcc", "--offset",
                  "--duration", "-o"]),
        ("scan", ["--manifest", "-o", "--jobs", "--no-progress", "--executor"]),
    ):
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: soundclass {command}")
        for opt in options:
            assert opt in out
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "scan" in out and "show" in out


def test_show_default_output_in_cwd(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["show", str(dataset / "apple" / "apple_0.wav")]) == 0
    out = tmp_path / "apple_0.png"
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 30_000
    assert "apple_0.png" in capsys.readouterr().out


def test_show_options(dataset, tmp_path):
    out = tmp_path / "pics" / "x.png"
    code = main(["show", str(dataset / "chips" / "chips_1.wav"), "-o", str(out), "--sr", "4000",
                 "--n-fft", "256", "--hop-length", "64", "--n-mels", "32", "--n-mfcc", "13",
                 "--offset", "0.1", "--duration", "0.2"])
    assert code == 0 and out.read_bytes()[:8] == PNG_MAGIC


def test_show_bad_input(dataset, tmp_path, capsys):
    assert main(["show", str(dataset / "chips" / "broken.wav"), "-o", str(tmp_path / "b.png")]) == 1
    err = capsys.readouterr().err
    assert "soundclass show: error:" in err and "broken.wav" in err
    assert not (tmp_path / "b.png").exists()
    assert main(["show", str(dataset / "apple" / "apple_0.wav"), "--offset", "9"]) == 1
    assert "beyond the end" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["show", "x.wav", "--n-fft", "0"])
    assert exc.value.code == 2


def test_scan_reports_bad_files_and_exits_0(dataset, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["scan", str(dataset), "-o", str(out), "--jobs", "1", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "Scanned 7 files in 2 classes" in text and "5 readable, 2 bad" in text
    assert "broken.wav" in text and "non-finite" in text
    assert f"report: {out}" in text
    for name in ("files.csv", "bad_files.csv", "summary.json", "class_counts.png", "durations.png"):
        assert (out / name).stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["classes"]["apple"]["files"] == 4 and summary["flags"]["nonfinite"] == 1
    with open(out / "bad_files.csv", newline="") as fh:
        assert sorted(Path(r["path"]).name for r in csv.DictReader(fh)) == ["broken.wav", "inf.wav"]


def test_scan_default_output_manifest_and_executor(dataset, tmp_path, monkeypatch, capsys):
    manifest = tmp_path / "labels.csv"
    manifest.write_text("path,label\napple/apple_0.wav,apple\nchips/chips_0.wav,chips\n")
    monkeypatch.chdir(tmp_path)
    code = main(["scan", str(dataset), "--manifest", str(manifest), "--executor", "serial",
                 "--no-progress"])
    assert code == 0
    assert "Scanned 2 files in 2 classes" in capsys.readouterr().out
    assert (tmp_path / "data_scan" / "files.csv").is_file()


def test_scan_missing_or_empty_folder_exits_1(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nope"), "--no-progress"]) == 1
    assert "nope: no such file or directory" in capsys.readouterr().err
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("no audio here")
    assert main(["scan", str(tmp_path / "empty"), "-o", str(tmp_path / "r"), "--no-progress"]) == 1
    assert "no audio files found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_real_data_show_and_scan(fsdd_dir, donateacry_dir, tmp_path, capsys):
    clip = sorted((fsdd_dir / "4").glob("*.wav"))[0]
    assert main(["show", str(clip), "-o", str(tmp_path / "digit.png")]) == 0
    assert (tmp_path / "digit.png").stat().st_size > 50_000
    # --no-near-duplicates: the fingerprint search takes minutes on 457 7-second clips (their
    # similar lengths defeat the duration pre-filter); tests/test_leakproof_split.py covers it
    assert main(["scan", str(donateacry_dir), "-o", str(tmp_path / "cry"), "--jobs", "2",
                 "--no-progress", "--no-near-duplicates"]) == 0
    text = capsys.readouterr().out
    assert "457 files in 5 classes" in text and "imbalance" in text
