"""Submission CSVs: exact format, failed files, top-k and probability columns, hostile names."""

from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import SAMPLE_CLASSES, read_csv_rows, sample_predictions
from soundclass.errors import ParameterError, SoundclassError
from soundclass.inference.predictions import Predictions
from soundclass.inference.submission import (
    excel_safe_cell,
    failed_list_path,
    write_csv,
    write_submission,
)

CLASSES = SAMPLE_CLASSES
BAD_UTF8 = os.fsdecode(b"bad_\xff\xfe_name.wav")  # what os.listdir returns for that name




def _named(names, failures=None):
    """Predictions for files with the given names (burger for all)."""
    paths = tuple(f"/in/{n}" for n in names)
    proba = np.tile([0.1, 0.8, 0.1], (len(paths), 1))
    failures = {f"/in/{n}": r for n, r in (failures or {}).items()}
    for p in failures:
        proba[paths.index(p)] = np.nan
    return Predictions(paths, proba, failures, CLASSES)




def test_submission_exact_format(tmp_path):
    out = write_submission(sample_predictions(), tmp_path / "submit.csv")
    text = out.read_bytes().decode("utf-8")
    assert text == "name,label\nb_2.wav,aloe\na_1.wav,burger\nc_ü.wav,chips\nd.wav,burger\n"
    assert not failed_list_path(out).exists()


def test_failed_list_path_is_stem_failed_csv(tmp_path):
    assert failed_list_path(tmp_path / "submit.csv") == tmp_path / "submit.failed.csv"
    assert failed_list_path("out/run.v2.csv").name == "run.v2.failed.csv"


def test_failed_file_gets_most_frequent_class_and_is_listed(tmp_path, capsys):
    bad = "/data/test/sous-dossier/c_ü.wav"
    out = write_submission(sample_predictions({bad: "not a RIFF file"}), tmp_path / "submit.csv")
    rows = read_csv_rows(out)
    assert [r[0] for r in rows[1:]] == ["b_2.wav", "a_1.wav", "c_ü.wav", "d.wav"]
    # burger is predicted twice among the three good files
    assert rows[3] == ["c_ü.wav", "burger"]
    assert read_csv_rows(failed_list_path(out)) == [["path", "reason"], [bad, "not a RIFF file"]]
    err = capsys.readouterr().err
    assert "1 file(s) could not be decoded" in err and bad in err


def test_failed_skip_and_error(tmp_path):
    bad = "/data/test/a_1.wav"
    out = write_submission(sample_predictions({bad: "empty"}), tmp_path / "s.csv", failed="skip")
    assert [r[0] for r in read_csv_rows(out)] == ["name", "b_2.wav", "c_ü.wav", "d.wav"]
    assert failed_list_path(out).is_file()
    with pytest.raises(SoundclassError, match="a_1.wav: empty"):
        write_submission(sample_predictions({bad: "empty"}), tmp_path / "e.csv", failed="error")
    with pytest.raises(ParameterError, match="failed="):
        write_submission(sample_predictions(), tmp_path / "x.csv", failed="ignore")


def test_stale_failed_list_removed(tmp_path):
    out = tmp_path / "s.csv"
    write_submission(sample_predictions({"/data/test/d.wav": "bad"}), out)
    assert failed_list_path(out).exists()
    write_submission(sample_predictions(), out)
    assert not failed_list_path(out).exists()


def test_all_failed_needs_prior(tmp_path):
    p = sample_predictions()
    allbad = Predictions(p.paths, np.full_like(p.proba, np.nan), {q: "bad" for q in p.paths}, CLASSES)
    with pytest.raises(SoundclassError, match="no file could be predicted"):
        write_submission(allbad, tmp_path / "s.csv")
    out = write_submission(allbad, tmp_path / "s.csv", prior=np.array([1.0, 2.0, 5.0]), with_proba=True)
    rows = read_csv_rows(out)
    assert {r[1] for r in rows[1:]} == {"chips"}
    assert rows[1][2:] == ["0.125000", "0.250000", "0.625000"]
    with pytest.raises(ParameterError, match="prior"):
        write_submission(allbad, tmp_path / "s.csv", prior=np.array([1.0, np.nan, 5.0]))


def test_top_k_and_proba_columns(tmp_path):
    out = write_submission(sample_predictions(), tmp_path / "s.csv", top_k=2, with_proba=True)
    rows = read_csv_rows(out)
    assert rows[0] == ["name", "label", "label_2", "proba_aloe", "proba_burger", "proba_chips"]
    assert rows[1][:3] == ["b_2.wav", "aloe", "burger"]
    assert rows[3][:3] == ["c_ü.wav", "chips", "burger"]
    for r in rows[1:]:
        assert sum(float(v) for v in r[3:]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ParameterError, match="top_k=4"):
        write_submission(sample_predictions(), tmp_path / "s.csv", top_k=4)


def test_duplicate_names_warn(tmp_path):
    p = Predictions(("/a/x.wav", "/b/x.wav"), np.array([[1.0, 0, 0], [0, 1.0, 0]]), {}, CLASSES)
    with pytest.warns(UserWarning, match="x.wav"):
        write_submission(p, tmp_path / "s.csv")


HOSTILE = [
    "bare\rcr.wav",
    "line\nfeed.wav",
    "crlf\r\n.wav",
    "tab\there.wav",
    'quote"d.wav',
    "com,ma.wav",
    "..\\..\\evil.wav",
    ".hidden.wav",
    " spaced .wav",
    BAD_UTF8,
]


def test_hostile_names_round_trip_one_row_each(tmp_path, capsys):
    failures = {"tab\there.wav": "bad\nreason, with\ttab", BAD_UTF8: "undecodable"}
    out = write_submission(_named(HOSTILE, failures), tmp_path / "s.csv")
    rows = read_csv_rows(out)
    assert [r[0] for r in rows[1:]] == HOSTILE  # a row for every file, names exact
    assert all(len(r) == 2 for r in rows)
    listed = read_csv_rows(failed_list_path(out))
    assert listed[0] == ["path", "reason"]
    assert {(p, r) for p, r in listed[1:]} == {(f"/in/{n}", r) for n, r in failures.items()}
    err = capsys.readouterr().err
    assert "/in/bad_\\xff\\xfe_name.wav: undecodable" in err  # printable, bytes escaped


def test_non_utf8_name_written_as_its_bytes(tmp_path):
    out = write_submission(_named(["ok.wav", BAD_UTF8]), tmp_path / "s.csv")
    data = out.read_bytes()
    assert data == b"name,label\nok.wav,burger\nbad_\xff\xfe_name.wav,burger\n"


def test_bare_cr_is_quoted(tmp_path):
    out = write_submission(_named(["a\rb.wav"]), tmp_path / "s.csv")
    assert out.read_bytes() == b'name,label\n"a\rb.wav",burger\n'


def test_excel_safe(tmp_path):
    names = ["=cmd.wav", "+1.wav", "-x.wav", "@sum.wav", "\tt.wav", "a=b.wav", "plain.wav"]
    plain = read_csv_rows(write_submission(_named(names), tmp_path / "plain.csv"))
    assert [r[0] for r in plain[1:]] == names  # off by default: names unchanged
    out = write_submission(_named(names, {"=cmd.wav": "bad"}), tmp_path / "safe.csv", excel_safe=True)
    rows = read_csv_rows(out)
    assert [r[0] for r in rows[1:]] == ["'=cmd.wav", "'+1.wav", "'-x.wav", "'@sum.wav", "'\tt.wav",
                                        "a=b.wav", "plain.wav"]
    assert rows[0] == ["name", "label"]
    assert read_csv_rows(failed_list_path(out))[1] == ["/in/=cmd.wav", "bad"]  # a path starts with '/'


def test_excel_safe_cell_and_labels(tmp_path):
    assert excel_safe_cell("-1") == "'-1"
    assert excel_safe_cell("x-1") == "x-1"
    p = Predictions(("/in/a.wav",), np.array([[0.0, 1.0]]), {}, ("ok", "=HYPERLINK()"))
    rows = read_csv_rows(write_submission(p, tmp_path / "s.csv", excel_safe=True))
    assert rows[1] == ["a.wav", "'=HYPERLINK()"]


def test_write_csv_quotes_header_and_creates_folder(tmp_path):
    out = write_csv(tmp_path / "sub" / "t.csv", ["a,b", "c"], [["1", 'x"y']])
    assert out.read_text(encoding="utf-8") == '"a,b",c\n1,"x""y"\n'



def test_predict_cli_has_excel_safe_flag():
    """``soundclass predict --excel-safe`` is parsed (write_submission's excel_safe is tested above)."""
    import argparse

    from soundclass.cli import predict as cli_predict

    parser = argparse.ArgumentParser()
    cli_predict.register(parser.add_subparsers())
    assert parser.parse_args(["predict", "run", "data", "-o", "s.csv", "--excel-safe"]).excel_safe
    assert not parser.parse_args(["predict", "run", "data", "-o", "s.csv"]).excel_safe
