"""A self-contained HTML report of an evaluation run.

``report.html`` has inline CSS, the pictures embedded as base64 PNG, and audio
players for the first misclassified clips, which are copied into
``run_dir/errors/`` under generated names so the folder can be moved or zipped.
Every string that comes from the user (class names, file names, config values,
reasons) goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from soundclass.evaluation.calibration_report import calibration_html
from soundclass.util.atomic import write_text_atomic

__all__ = ["write_html_report", "copy_error_clips", "MAX_AUDIO_PLAYERS", "MAX_TABLE_ROWS"]

MAX_AUDIO_PLAYERS = 30
MAX_TABLE_ROWS = 200

# Extensions a browser can usually play in <audio>, with their MIME types.
_PLAYABLE = {
    ".wav": "audio/wav", ".wave": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg",
    ".oga": "audio/ogg", ".opus": "audio/ogg", ".mp3": "audio/mpeg",
}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;gap:1em;flex-wrap:wrap}
.card{border:1px solid #ddd;border-radius:6px;padding:.6em 1em;min-width:9em}
.card b{display:block;font-size:1.5em}
.warn{background:#fff4e0;border-left:4px solid #f0a000;padding:.4em .8em;margin:.3em 0}
.fail{background:#fdecec;border-left:4px solid #d33;padding:.4em .8em;margin:.3em 0}
img{max-width:100%;border:1px solid #eee}
audio{height:2em;vertical-align:middle}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return _e(value)


def _image(path: str | os.PathLike | None, alt: str) -> str:
    if path is None or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def copy_error_clips(
    misclassified: Sequence[Mapping[str, Any]],
    run_dir: str | os.PathLike,
    *,
    limit: int = MAX_AUDIO_PLAYERS,
) -> list[str | None]:
    """Copy the first ``limit`` misclassified clips into ``run_dir/errors/``.

    Names are generated (``err_000.wav``, ...), never taken from the user, so
    they are safe in a URL and on any file system.  Clips that are missing or
    not playable in a browser are skipped; ``err_*`` clips of an earlier
    report in the same folder are removed.

    Returns
    -------
    list of str or None
        For each row of ``misclassified`` (up to ``limit``), the copied clip's
        path relative to ``run_dir`` (``None`` if not copied).
    """
    out_dir = Path(run_dir) / "errors"
    for stale in out_dir.glob("err_*"):  # clips of an earlier report in this folder
        stale.unlink()
    rel: list[str | None] = []
    for i, row in enumerate(list(misclassified)[:limit]):
        src = Path(str(row["path"]))
        ext = src.suffix.lower()
        if ext not in _PLAYABLE or not src.is_file():
            rel.append(None)
            continue
        out_dir.mkdir(parents=True, exist_ok=True)
        dst = out_dir / f"err_{i:03d}{ext}"
        try:
            shutil.copyfile(src, dst)
        except OSError:
            rel.append(None)
            continue
        rel.append(f"errors/{dst.name}")
    return rel


def _cards(metrics: Mapping[str, Any]) -> str:
    shown = [
        ("accuracy", "accuracy"), ("macro_f1", "macro F1"),
        ("balanced_accuracy", "balanced accuracy"), ("log_loss", "log loss"),
        ("n", "clips"),
    ]
    cards = [
        f'<div class="card">{_e(label)}<b>{_fmt(metrics[key])}</b></div>'
        for key, label in shown if metrics.get(key) is not None
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def _per_class_table(metrics: Mapping[str, Any], classes: Sequence[str]) -> str:
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return ""
    cols = ("precision", "recall", "f1", "support")
    head = "".join(f"<th>{c}</th>" for c in ("class", *cols))
    body = []
    for c in classes:
        stats = per_class.get(c, {})
        cells = "".join(f'<td class="num">{_fmt(stats.get(k, ""))}</td>' for k in cols)
        body.append(f"<tr><td>{_e(c)}</td>{cells}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _misclassified_table(rows: Sequence[Mapping[str, Any]], clips: Sequence[str | None]) -> str:
    if not rows:
        return "<p>No misclassified clips.</p>"
    head = "<tr><th>#</th><th>file</th><th>true</th><th>predicted</th><th>confidence</th><th>top 3</th><th>listen</th></tr>"
    body = []
    for i, row in enumerate(rows):
        clip = clips[i] if i < len(clips) else None
        ext = Path(clip).suffix if clip else ""
        player = (
            f'<audio controls preload="none"><source src="{_e(clip)}" type="{_PLAYABLE[ext]}"></audio>'
            if clip else ""
        )
        top3 = row.get("top3", "")
        if not isinstance(top3, str):
            top3 = " | ".join(map(str, top3))
        body.append(
            f"<tr><td class='num'>{i + 1}</td><td>{_e(os.path.basename(str(row['path'])))}</td>"
            f"<td>{_e(row['true'])}</td><td>{_e(row['predicted'])}</td>"
            f"<td class='num'>{_fmt(float(row['confidence']))}</td><td>{_e(top3)}</td>"
            f"<td>{player}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _summary_table(summary: Mapping[str, Any]) -> str:
    if not summary:
        return ""
    rows = []
    for key, value in summary.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k}: {v}" for k, v in value.items())
        rows.append(f"<tr><th>{_e(key)}</th><td>{_e(value)}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _failures_section(failures: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    items = list(failures.items()) if isinstance(failures, Mapping) else list(failures)
    if not items:
        return "<p>None.</p>"
    return "".join(f'<div class="fail"><b>{_e(p)}</b>: {_e(r)}</div>' for p, r in items)


def _oof_section(oof: Mapping[str, Any], classes: Sequence[str]) -> str:
    """Out-of-fold scores of a k-fold ensemble run: cards, per-class table, where the predictions are."""
    n_folds = oof.get("n_folds", "?")
    what = ("These are the evaluation above (no held-out validation part)." if oof.get("is_validation")
            else "The evaluation above is the ensemble on the held-out validation part.")
    best = oof.get("best_epochs")
    epochs = (f" Best epoch of each member: {', '.join(str(int(b) + 1) for b in best)}." if best else "")
    return "\n".join([
        f"<h2>Out-of-fold predictions ({_e(n_folds)} folds)</h2>",
        f"<p>Every training clip predicted by the fold member that did not train on it. {_e(what)}"
        f"{_e(epochs)} File: {_e(os.path.basename(str(oof.get('file', 'oof.csv'))))}.</p>",
        _cards(oof),
        _per_class_table(oof, classes),
    ])


def _auto_section(auto: Mapping[str, Any]) -> str:
    """The ``--model auto`` leaderboard: mean +- std per candidate, folds, seconds, notes."""
    rows = []
    for r in sorted(auto.get("candidates", ()), key=lambda r: -r.get("macro_f1_mean", -1.0)):
        scored = r.get("status") == "scored"

        def ms(key: str, r=r, scored=scored) -> str:
            return f"{r[key + '_mean']:.3f} &plusmn; {r[key + '_std']:.3f}" if scored else "&ndash;"

        chosen = r.get("model") == auto.get("chosen")
        rows.append(f"<tr><td>{_e(r.get('model'))}"
                    f"{' (chosen)' if chosen else ''}</td><td>{ms('macro_f1')}</td><td>{ms('accuracy')}</td>"
                    f"<td>{_e(r.get('folds'))} / {_e(r.get('of_folds'))}</td>"
                    f"<td>{float(r.get('seconds', 0.0)):.1f}</td><td>{_e(r.get('note', ''))}</td></tr>")
    return (f"<h2>Model choice (--model auto)</h2><p>Grouped {_e(auto.get('folds'))}-fold cross-validation "
            f"on the training part only ({_e(auto.get('n_train'))} clips; the validation split was not "
            f"used to choose), {float(auto.get('seconds', 0.0)):.0f} s of a {float(auto.get('time_budget', 0.0)):.0f} s "
            f"budget. Chosen by mean macro-F1: <b>{_e(auto.get('chosen'))}</b>.</p>"
            "<table><tr><th>model</th><th>macro-F1</th><th>accuracy</th><th>folds</th><th>seconds</th>"
            "<th>note</th></tr>" + "".join(rows) + "</table>")


def write_html_report(
    run_dir: str | os.PathLike,
    *,
    title: str,
    metrics: Mapping[str, Any],
    classes: Sequence[str],
    history_png: str | os.PathLike | None = None,
    confusion_png: str | os.PathLike | None = None,
    misclassified: Sequence[Mapping[str, Any]] = (),
    dataset_summary: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    failures: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    max_audio: int = MAX_AUDIO_PLAYERS,
    oof: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    reliability_png: str | os.PathLike | None = None,
    auto: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/report.html``.

    Parameters
    ----------
    run_dir : path
        The run folder; the report and ``errors/`` go there.
    title : str
    metrics : mapping
        As in ``metrics.json``: ``accuracy``, ``macro_f1``, ``balanced_accuracy``,
        ``log_loss``, ``n`` and ``per_class`` (``class -> {precision,
        recall, f1, support}``); missing keys are left out.
    classes : sequence of str
        Class names, in table order.
    history_png, confusion_png : path, optional
        Learning curves and confusion matrix, embedded as base64.
    misclassified : sequence of mapping
        Rows with ``path``, ``true``, ``predicted``, ``confidence``, ``top3``
        (the first :data:`MAX_TABLE_ROWS` are listed); the first ``max_audio`` get an ``<audio controls>`` player on a copy of
        the clip in ``run_dir/errors/``.
    dataset_summary : mapping, optional
        Shown as a two-column table (e.g. clips, classes, class counts).
    config : mapping, optional
        The resolved configuration, shown as JSON.
    warnings : sequence of str
        E.g. group leakage between train and validation.
    failures : mapping or sequence of (path, reason)
        Skipped files and why.
    oof : mapping, optional
        Out-of-fold scores of a k-fold run (``metrics.json`` ``oof``), shown
        in their own section (:func:`_oof_section`).
    calibration : mapping, optional
        ECE/log loss before and after temperature scaling and the "unknown"
        threshold (:func:`soundclass.evaluation.calibration_report.calibration_summary`).
    reliability_png : path, optional
        The reliability diagram, embedded next to the calibration table.
    auto : mapping, optional
        The ``--model auto`` leaderboard (``metrics.json`` ``auto``), shown by
        :func:`_auto_section`.

    Returns
    -------
    Path
        The report file.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clips = copy_error_clips(misclassified, run_dir, limit=max_audio)
    config_json = json.dumps(config, indent=2, sort_keys=True, default=str) if config else ""
    n_failures = len(failures)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _cards(metrics),
    ]
    if warnings:
        parts.append("<h2>Warnings</h2>")
        parts.extend(f'<div class="warn">{_e(w)}</div>' for w in warnings)
    if oof:
        parts.append(_oof_section(oof, classes))
    if auto:
        parts.append(_auto_section(auto))
    parts += [
        "<h2>Per-class results</h2>",
        _per_class_table(metrics, classes),
        "<h2>Confusion matrix</h2>",
        _image(confusion_png, "confusion matrix") or "<p>Not available.</p>",
        "<h2>Learning curves</h2>",
        _image(history_png, "learning curves") or "<p>Not available.</p>",
    ]
    if calibration or reliability_png:
        parts += ["<h2>Calibration</h2>", calibration_html(calibration),
                  _image(reliability_png, "reliability diagram")]
    parts += [
        f"<h2>Misclassified clips ({len(misclassified)})</h2>",
        _misclassified_table(list(misclassified)[:MAX_TABLE_ROWS], clips),
        (f"<p>First {MAX_TABLE_ROWS} shown; all are in misclassified.csv.</p>"
         if len(misclassified) > MAX_TABLE_ROWS else ""),
        f"<h2>Skipped files ({n_failures})</h2>",
        _failures_section(failures),
    ]
    if dataset_summary:
        parts += ["<h2>Dataset</h2>", _summary_table(dataset_summary)]
    if config_json:
        parts += ["<h2>Configuration</h2>", f"<pre>{_e(config_json)}</pre>"]
    parts.append("</body></html>\n")
    out = run_dir / "report.html"
    write_text_atomic(out, "\n".join(parts), errors="backslashreplace")  # non-UTF-8 names
    return out
