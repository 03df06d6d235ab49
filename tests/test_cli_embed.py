"""``soundclass embed``: one row per clip, CSV or .npz, bad files listed and skipped."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from conftest import make_signal
from soundclass.cli import main
from soundclass.models.aisfx import clip_embedding


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "data"
    for label, seed in (("a", 0), ("a", 1), ("b", 2)):
        (root / label).mkdir(parents=True, exist_ok=True)
        sf.write(root / label / f"clip{seed}.wav", make_signal(sr=16000, seconds=1.5, seed=seed), 16000)
    (root / "b" / "broken.wav").write_bytes(b"RIFF not really audio")
    return root


def test_embed_npz_rows_and_bad_file(folder, tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "broken.wav" in err
    with np.load(out) as data:
        paths, labels, emb = list(data["path"]), list(data["label"]), data["embedding"]
    assert [p.rsplit("/", 1)[-1] for p in paths] == ["clip0.wav", "clip1.wav", "clip2.wav"]
    assert labels == ["a", "a", "b"]
    assert emb.shape == (3, 1024) and emb.dtype == np.float32
    y, _ = sf.read(folder / "a" / "clip1.wav", dtype="float32")
    np.testing.assert_allclose(emb[1], clip_embedding(y, sr=16000), atol=1e-4, rtol=1e-4)


def test_embed_csv_flat_folder(folder, tmp_path):
    flat = folder / "a"
    out = tmp_path / "emb.csv"
    assert main(["embed", str(flat), "-o", str(out), "--quiet"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["path", "label", "e0"] and len(rows[0]) == 2 + 1024
    assert len(rows) == 3 and all(r[1] == "" for r in rows[1:])
    values = np.array(rows[1][2:], dtype=np.float32)
    assert np.isfinite(values).all()


def test_embed_bad_output_and_no_good_clip(folder, tmp_path, capsys):
    assert main(["embed", str(folder), "-o", str(tmp_path / "emb.txt")]) == 1
    assert ".csv or .npz" in capsys.readouterr().err
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.wav").write_bytes(b"nope")
    assert main(["embed", str(only_bad), "-o", str(tmp_path / "e.csv"), "--quiet"]) == 1
    assert "none of the 1 clips" in capsys.readouterr().err


def test_embed_whisper_backbone(folder, tmp_path):
    from soundclass.extraction.embed import BACKBONES
    from soundclass.models.whisper import whisper_vector

    out = tmp_path / "emb.npz"
    assert main(["embed", str(folder), "-o", str(out), "--backbone", "whisper", "--quiet"]) == 0
    with np.load(out) as data:
        emb = data["embedding"]
    assert emb.shape == (3, 3584) and emb.dtype == np.float32
    y, _ = sf.read(folder / "b" / "clip2.wav", dtype="float32")
    np.testing.assert_allclose(emb[2], whisper_vector(y, sr=16000), atol=1e-5, rtol=1e-5)
    assert not np.allclose(emb[0], emb[2], atol=1e-2)  # different clips, different vectors
    # the CLI's choices are the library's backbones
    import argparse

    from soundclass.cli.embed import register
    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    action = next(a for a in sub.choices["embed"]._actions if a.dest == "backbone")
    assert tuple(action.choices) == tuple(BACKBONES)
