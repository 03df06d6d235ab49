"""HTML report: self-contained, escaped, audio players on copied clips."""

from __future__ import annotations

import re

import numpy as np
import soundfile as sf

from soundclass.evaluation.report import copy_error_clips, write_html_report

EVIL = "<script>alert(1)</script>"


def _metrics(classes):
    return {
        "n": 3, "accuracy": 1 / 3, "macro_f1": 0.25, "balanced_accuracy": 0.5, "log_loss": 1.1,
        "per_class": {c: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 1} for c in classes},
    }


def _png(path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.add_subplot().plot([0, 1])
    fig.savefig(path)
    return path


def test_report_escapes_user_strings_and_embeds(tmp_path):
    clip = tmp_path / "data" / "<img src=x onerror=alert(1)>.wav"
    clip.parent.mkdir()
    sf.write(clip, np.zeros(800, dtype=np.float32), 8000)
    classes = [EVIL, "b&b"]
    out = write_html_report(
        tmp_path / "run",
        title=f"run {EVIL}",
        metrics=_metrics(classes),
        classes=classes,
        history_png=_png(tmp_path / "h.png"),
        confusion_png=_png(tmp_path / "c.png"),
        misclassified=[{"path": str(clip), "true": EVIL, "predicted": "b&b", "confidence": 0.9,
                        "top3": f"b&b:0.90 {EVIL}:0.10"}],
        dataset_summary={"clips": 3, "per class": {EVIL: 1}},
        config={"group_pattern": EVIL},
        warnings=[f"group {EVIL} is in train and validation"],
        failures={str(tmp_path / "bad<1>.wav"): "not <audio>"},
    )
    text = out.read_text(encoding="utf-8")
    assert "<script>" not in text and "<img src=x" not in text
    assert "&lt;img src=x onerror=alert(1)&gt;.wav" in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "b&amp;b" in text
    assert "not &lt;audio&gt;" in text
    assert text.count("data:image/png;base64,") == 2
    # the clip is copied under a generated name and played from there
    assert (tmp_path / "run" / "errors" / "err_000.wav").is_file()
    assert re.search(r'<audio controls[^>]*><source src="errors/err_000.wav" type="audio/wav">', text)
    assert "group &lt;script&gt;" in text  # warning shown


def test_copy_error_clips_limit_and_missing(tmp_path):
    rows = []
    for i in range(4):
        p = tmp_path / f"c{i}.wav"
        sf.write(p, np.zeros(100, dtype=np.float32), 8000)
        rows.append({"path": str(p)})
    rows.insert(1, {"path": str(tmp_path / "missing.wav")})
    rows.insert(2, {"path": str(tmp_path / "notes.txt")})
    rel = copy_error_clips(rows, tmp_path / "run", limit=4)
    assert rel == ["errors/err_000.wav", None, None, "errors/err_003.wav"]
    assert sorted(p.name for p in (tmp_path / "run" / "errors").iterdir()) == ["err_000.wav", "err_003.wav"]
    assert copy_error_clips(rows[:1], tmp_path / "run") == ["errors/err_000.wav"]
    assert sorted(p.name for p in (tmp_path / "run" / "errors").iterdir()) == ["err_000.wav"]


def test_report_without_optional_parts(tmp_path):
    out = write_html_report(tmp_path, title="t", metrics={"accuracy": 1.0}, classes=["a"])
    text = out.read_text(encoding="utf-8")
    assert "No misclassified clips" in text
    assert "Not available" in text
    assert not (tmp_path / "errors").exists()
