"""Accuracy benchmark: train each model with its defaults on the same grouped split.

Usage::

    python benchmarks/accuracy.py DATA_DIR [--group-pattern REGEX] \\
        [--models seed-cnn seed-lstm cnn] [--epochs N] [-o OUT_DIR]

    # FSDD, speaker-grouped (6 speakers: no speaker in both train and validation)
    python benchmarks/accuracy.py ../shared/datasets/fsdd --group-pattern '^\\d+_(?P<group>[a-z]+)_'

    # grouped k-fold: FSDD leave-one-speaker-out (6 speakers, 6 folds), one feature cache for every
    # row, plus the mean probability of two rows and of auto's two best-ranked candidates per fold
    python benchmarks/accuracy.py ../shared/datasets/fsdd --folds 6 \\
        --group-pattern '^\\d+_(?P<group>[a-z]+)_' --models whisper-probe,fusion-probe,auto \\
        --average whisper-probe+fusion-probe --auto-top 2 --cache-dir CACHE -o OUT

With ``--folds K`` every model is trained ``K`` times on the same grouped
stratified folds of all clips (:func:`soundclass.data.splits.kfold`; with as
many folds as groups, leave-one-group-out) and scored on each held-out fold;
the tables give mean +- std (over folds) of accuracy and macro-F1 and the
training seconds per fold, then every model's accuracy on each held-out fold
(named by its groups, e.g. the speaker).  ``auto`` chooses its model inside
each fold's training part (its own cross-validation never sees the held-out
fold).  Each model's held-out probabilities are kept (``OUT_DIR/proba``), so
``--average M1+M2`` adds a row for the mean probability of two runs and
``--auto-top K`` one for the mean of auto's K best-ranked candidates in each
fold (no training); ``--reuse`` takes rows already in ``OUT_DIR`` instead of
training them again.  Give every row the same ``--cache-dir``: each clip's
embedding is then computed once for all rows and folds.

Every model gets the same :class:`~soundclass.training.TrainConfig` apart from
``model`` (same ``seed``, ``val_size`` and groups), so the trainer's seeded
holdout gives every model the same validation clips; the script checks this
and says so.  Prints a markdown table (model, parameters, validation accuracy,
macro-F1, balanced accuracy, training minutes) and writes it with the raw
numbers to ``OUT_DIR/results.md`` and ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from soundclass.checkpoint.format import load_checkpoint
from soundclass.data.dataset import discover
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.models import list_models
from soundclass.training import TrainConfig, train

DEFAULT_MODELS = ("seed-cnn", "seed-lstm", "cnn")
DEFAULT_FOLD_MODELS = ("seed-cnn", "seed-lstm", "mfcc-svm", "aisfx-probe", "aisfx", "cnn",
                       "whisper-probe", "fusion-probe", "whisper", "auto")


def fold_paths(dataset, *, n_folds: int, group_pattern: str | None, seed: int) -> list[list[str]]:
    """The held-out paths of each grouped stratified fold of ``dataset`` (every clip, failed or not)."""
    return [paths for paths, _ in held_out_folds(dataset, n_folds=n_folds, group_pattern=group_pattern,
                                                 seed=seed)]


def held_out_folds(dataset, *, n_folds: int, group_pattern: str | None,
                   seed: int) -> list[tuple[list[str], list[str]]]:
    """Each grouped stratified fold of ``dataset``: its held-out paths and the sorted groups they come from."""
    from soundclass.data.dataset import assign_groups
    from soundclass.data.splits import kfold

    if group_pattern:
        dataset = assign_groups(dataset, group_pattern)
    groups = [it.group for it in dataset.items]
    folds = kfold(dataset.targets, n_splits=n_folds, seed=seed,
                  groups=groups if all(g is not None for g in groups) else None)
    return [([dataset.items[i].path for i in va], sorted({str(groups[i]) for i in va}) if groups[0] else [])
            for _, va in folds]


def run_model_folds(dataset, model: str, folds: list[list[str]], *, out_dir: Path, epochs: int | None,
                    group_pattern: str | None, seed: int, cache_dir: str | None, n_jobs: int | None,
                    progress: bool, auto_candidates: str | None = None,
                    time_budget: float | None = None) -> dict:
    """Train ``model`` once per fold on the other folds; its mean +- std row."""
    from soundclass.training.auto import train_auto
    from soundclass.training.trainer import prepare_data, train_prepared

    config = TrainConfig(model=model, epochs=epochs, group_pattern=group_pattern, seed=seed,
                         cache_dir=cache_dir, n_jobs=n_jobs, auto_candidates=auto_candidates,
                         **({"time_budget": time_budget} if time_budget else {}))
    acc, f1, seconds, chosen, last_acc, last_f1, ranking = [], [], [], [], [], [], []
    proba_out: dict[str, np.ndarray] = {}
    for k, val in enumerate(folds):
        t0 = time.perf_counter()
        run_dir = out_dir / model / f"fold{k}"
        if model == "auto":
            result = train_auto(dataset, config, out_dir=run_dir, progress=progress, val_paths=val)
            chosen.append(result.auto["chosen"])
            ranking.append(auto_ranking(result.auto))
        else:
            data = prepare_data(dataset, config, progress=progress, val_paths=val)
            result = train_prepared(data, config, out_dir=run_dir, progress=progress)
        seconds.append(time.perf_counter() - t0)
        index = {c: i for i, c in enumerate(result.classes)}
        y_true = np.array([index[it.label] for it in result.val_items])
        proba = np.asarray(result.val_proba, dtype=np.float64)
        m = evaluate_predictions(y_true, proba.argmax(axis=1), classes=result.classes)
        proba_out[f"fold{k}_paths"] = np.array([it.path for it in result.val_items])
        proba_out[f"fold{k}_proba"] = proba
        proba_out[f"fold{k}_y"] = y_true
        proba_out[f"fold{k}_classes"] = np.array(result.classes)
        acc.append(m["accuracy"])
        f1.append(m["macro_f1"])
        # neural models report their best epoch, chosen on this held-out fold; the last epoch
        # involves no such choice (classical models have no epochs: the same numbers)
        last = result.history[-1] if result.history and "val_accuracy" in result.history[-1] else None
        last_acc.append(m["accuracy"] if last is None else float(last["val_accuracy"]))
        last_f1.append(m["macro_f1"] if last is None else float(last["val_macro_f1"]))
        print(f"  {model} fold {k + 1}/{len(folds)}: accuracy {m['accuracy']:.3f}, macro-F1 "
              f"{m['macro_f1']:.3f} (last epoch {last_acc[-1]:.3f}, {last_f1[-1]:.3f}), {seconds[-1]:.0f} s"
              + (f" (chose {chosen[-1]})" if chosen else ""), file=sys.stderr, flush=True)
    proba_dir = out_dir / "proba"
    proba_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(proba_dir / f"{model}.npz", **proba_out)
    return {"model": model, "folds": len(folds), "accuracy_mean": float(np.mean(acc)),
            "accuracy_std": float(np.std(acc)), "macro_f1_mean": float(np.mean(f1)),
            "macro_f1_std": float(np.std(f1)), "fold_accuracy": acc, "fold_macro_f1": f1,
            "last_accuracy_mean": float(np.mean(last_acc)), "last_accuracy_std": float(np.std(last_acc)),
            "last_macro_f1_mean": float(np.mean(last_f1)), "last_macro_f1_std": float(np.std(last_f1)),
            "train_seconds_per_fold": float(np.mean(seconds)), "fold_seconds": seconds, "chosen": chosen,
            "ranking": ranking}


def auto_ranking(record: dict) -> list[str]:
    """The candidates auto scored, best first (mean macro-F1 of its own cross-validation; ties: listed first)."""
    scored = [r for r in record["candidates"] if r.get("status") == "scored"]
    return [r["model"] for r in sorted(scored, key=lambda r: -r["macro_f1_mean"])]


def load_fold_proba(out_dir: Path, model: str, n_folds: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per fold ``(paths, y_true, proba)`` of a model run by :func:`run_model_folds` in ``out_dir``."""
    with np.load(out_dir / "proba" / f"{model}.npz") as z:
        return [(z[f"fold{k}_paths"], z[f"fold{k}_y"], z[f"fold{k}_proba"]) for k in range(n_folds)]


def averaged_row(name: str, members_per_fold: list[list[str]], out_dir: Path, *,
                 classes: list[str]) -> dict:
    """Accuracy of the mean probability of some models' runs, fold by fold (no training).

    ``members_per_fold[k]`` names the models averaged on fold ``k`` (each run by
    :func:`run_model_folds` on the same folds); the clips of a fold are matched
    by path, so every member must have scored the same held-out clips.
    """
    n_folds = len(members_per_fold)
    cache = {m: load_fold_proba(out_dir, m, n_folds) for m in {m for ms in members_per_fold for m in ms}}
    acc, f1 = [], []
    for k, members in enumerate(members_per_fold):
        paths, y_true, _ = cache[members[0]][k]
        order = np.argsort(paths)
        probas = []
        for m in members:
            p_paths, p_y, p = cache[m][k]
            o = np.argsort(p_paths)
            if not np.array_equal(p_paths[o], paths[order]) or not np.array_equal(p_y[o], y_true[order]):
                raise SystemExit(f"{name}: {m} did not score the same clips as {members[0]} on fold {k + 1}")
            probas.append(p[o])
        mean = np.mean(probas, axis=0)
        m_ = evaluate_predictions(y_true[order], mean.argmax(axis=1), classes=classes)
        acc.append(m_["accuracy"])
        f1.append(m_["macro_f1"])
        print(f"  {name} fold {k + 1}/{n_folds} ({' + '.join(members)}): accuracy {acc[-1]:.3f}, "
              f"macro-F1 {f1[-1]:.3f}", file=sys.stderr, flush=True)
    return {"model": name, "folds": n_folds, "accuracy_mean": float(np.mean(acc)),
            "accuracy_std": float(np.std(acc)), "macro_f1_mean": float(np.mean(f1)),
            "macro_f1_std": float(np.std(f1)), "fold_accuracy": acc, "fold_macro_f1": f1,
            "last_accuracy_mean": float(np.mean(acc)), "last_accuracy_std": float(np.std(acc)),
            "last_macro_f1_mean": float(np.mean(f1)), "last_macro_f1_std": float(np.std(f1)),
            "train_seconds_per_fold": 0.0, "fold_seconds": [0.0] * n_folds,
            "chosen": [" + ".join(ms) for ms in members_per_fold], "ranking": []}


def folds_table(rows: list[dict]) -> str:
    """The k-fold results as a markdown table (mean +- std over folds)."""
    lines = ["| model | folds | accuracy | macro-F1 | last-epoch accuracy | last-epoch macro-F1 | "
             "train seconds per fold |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['folds']} | {r['accuracy_mean']:.3f} +- {r['accuracy_std']:.3f} | "
                     f"{r['macro_f1_mean']:.3f} +- {r['macro_f1_std']:.3f} | "
                     f"{r['last_accuracy_mean']:.3f} +- {r['last_accuracy_std']:.3f} | "
                     f"{r['last_macro_f1_mean']:.3f} +- {r['last_macro_f1_std']:.3f} | "
                     f"{r['train_seconds_per_fold']:.0f} |")
    return "\n".join(lines) + "\n"


def per_fold_table(rows: list[dict], fold_groups: list[list[str]]) -> str:
    """Accuracy of every model on every held-out fold (named by its groups when there are at most 3)."""
    heads = [", ".join(g) if 0 < len(g) <= 3 else f"fold {k + 1}" for k, g in enumerate(fold_groups)]
    lines = ["| model | " + " | ".join(heads) + " | mean +- std |", "|---|" + "---:|" * (len(heads) + 1)]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(f"{a:.3f}" for a in r["fold_accuracy"])
                     + f" | {r['accuracy_mean']:.3f} +- {r['accuracy_std']:.3f} |")
    return "\n".join(lines) + "\n"


def run_model(dataset, model: str, *, out_dir: Path, epochs: int | None, group_pattern: str | None,
              val_size: float, seed: int, cache_dir: str | None, n_jobs: int | None,
              progress: bool) -> dict:
    """Train one model and return its benchmark row."""
    config = TrainConfig(model=model, epochs=epochs, group_pattern=group_pattern, val_size=val_size,
                         seed=seed, cache_dir=cache_dir, n_jobs=n_jobs)
    t0 = time.perf_counter()
    result = train(dataset, config, out_dir=out_dir / model, progress=progress)
    minutes = (time.perf_counter() - t0) / 60.0
    index = {c: i for i, c in enumerate(result.classes)}
    y_true = np.array([index[it.label] for it in result.val_items])
    proba = np.asarray(result.val_proba)
    m = evaluate_predictions(y_true, proba.argmax(axis=1), classes=result.classes, proba=proba)
    net = load_checkpoint(result.checkpoint_dir).model
    return {
        "model": model,
        "params": int(sum(p.numel() for p in net.parameters())),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "balanced_accuracy": m["balanced_accuracy"],
        "log_loss": m["log_loss"],
        "train_minutes": minutes,
        "epochs_run": len(result.history),
        # the best epoch is chosen on the validation clips themselves (optimistic);
        # the last epoch's accuracy involves no such choice
        "last_epoch_accuracy": float(result.history[-1]["val_accuracy"]),
        "best_epoch": result.best_epoch,
        "n_val": len(result.val_items),
        "n_failed": len(result.failures),
        "val_paths": sorted(it.path for it in result.val_items),
    }


def markdown_table(rows: list[dict]) -> str:
    """The results as a markdown table."""
    lines = [
        "| model | params | val accuracy | macro-F1 | balanced accuracy | last-epoch accuracy | train minutes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['accuracy']:.3f} | {r['macro_f1']:.3f} | "
            f"{r['balanced_accuracy']:.3f} | {r['last_epoch_accuracy']:.3f} | {r['train_minutes']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", metavar="DATA_DIR", help="labelled folder (one sub-folder per class)")
    parser.add_argument("--group-pattern", default=None, metavar="REGEX",
                        help="file-name regex giving each clip's group (speaker, recording)")
    parser.add_argument("--models", nargs="+", default=None, metavar="MODEL",
                        help=f"registered models or 'auto', space- or comma-separated (default: "
                             f"{' '.join(DEFAULT_MODELS)}; with --folds: {' '.join(DEFAULT_FOLD_MODELS)})")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="grouped stratified K-fold over all clips: mean +- std per model (0: one split)")
    parser.add_argument("--epochs", type=int, default=None, help="override every model's epochs")
    parser.add_argument("--auto-candidates", default=None, metavar="M1,M2,...",
                        help="with --folds: the candidates of auto (default: its own)")
    parser.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                        help="with --folds: auto's time budget per fold (default: its own)")
    parser.add_argument("--average", action="append", default=None, metavar="M1+M2",
                        help="with --folds: also a row for the mean probability of these models' runs "
                             "(repeatable; no training)")
    parser.add_argument("--auto-top", type=int, default=0, metavar="K",
                        help="with --folds and auto: also a row averaging, per fold, the probabilities "
                             "of auto's K best-ranked candidates (each must be a row too)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --folds: take the rows of models already in OUT_DIR/results.json "
                             "(same folds and seed) instead of training them again")
    parser.add_argument("--val-size", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="feature cache (default: OUT_DIR/cache)")
    parser.add_argument("--jobs", type=int, default=None, help="feature extraction workers")
    parser.add_argument("-o", "--output", default=None, metavar="OUT_DIR",
                        help="run folders and results (default: a new temporary folder)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    models = [m for arg in (args.models or (DEFAULT_FOLD_MODELS if args.folds else DEFAULT_MODELS))
              for m in arg.split(",") if m]
    unknown = [m for m in models if m not in list_models() and not (args.folds and m == "auto")]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list_models()}"
                     + (" or auto" if args.folds else " (auto needs --folds)"))

    out = Path(args.output or tempfile.mkdtemp(prefix="soundclass-accuracy-"))
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = args.cache_dir or str(out / "cache")
    dataset = discover(args.data)
    print(f"{len(dataset)} clips, {len(dataset.classes)} classes; runs in {out}", file=sys.stderr)
    if args.folds:
        return _main_folds(args, dataset, models, out, cache_dir)
    rows = []
    for model in models:
        print(f"training {model} ...", file=sys.stderr)
        rows.append(run_model(dataset, model, out_dir=out, epochs=args.epochs,
                              group_pattern=args.group_pattern, val_size=args.val_size, seed=args.seed,
                              cache_dir=cache_dir, n_jobs=args.jobs, progress=not args.quiet))
    same_split = all(r["val_paths"] == rows[0]["val_paths"] for r in rows)
    table = markdown_table(rows)
    note = (f"Same validation split for every model: {'yes' if same_split else 'NO'} "
            f"({rows[0]['n_val']} clips; group pattern {args.group_pattern!r}; seed {args.seed}). "
            "Train minutes include feature extraction (each model has its own feature). "
            "Accuracy, macro-F1 and balanced accuracy are those of the best epoch, which is chosen "
            "on these same validation clips (optimistic); the last-epoch accuracy involves no choice.\n")
    print(table + "\n" + note)
    (out / "results.md").write_text(table + "\n" + note, encoding="utf-8")
    summary = [{k: v for k, v in r.items() if k != "val_paths"} for r in rows]
    (out / "results.json").write_text(json.dumps({"rows": summary, "same_split": same_split,
                                                  "data": args.data, "group_pattern": args.group_pattern,
                                                  "seed": args.seed}, indent=2) + "\n", encoding="utf-8")
    return 0 if same_split else 1


def _main_folds(args, dataset, models, out: Path, cache_dir: str) -> int:
    held_out = held_out_folds(dataset, n_folds=args.folds, group_pattern=args.group_pattern, seed=args.seed)
    folds = [paths for paths, _ in held_out]
    previous = {}
    if args.reuse and (out / "results.json").is_file():
        old = json.loads((out / "results.json").read_text(encoding="utf-8"))
        if old.get("folds") == len(folds) and old.get("seed") == args.seed and old.get("fold_paths") == folds:
            previous = {r["model"]: r for r in old["rows"] if (out / "proba" / f"{r['model']}.npz").is_file()}
    rows = []
    for model in models:
        if model in previous:
            print(f"{model}: reused from {out / 'results.json'}", file=sys.stderr)
            rows.append(previous[model])
            continue
        print(f"{model}: {len(folds)} folds ...", file=sys.stderr)
        rows.append(run_model_folds(dataset, model, folds, out_dir=out, epochs=args.epochs,
                                    group_pattern=args.group_pattern, seed=args.seed, cache_dir=cache_dir,
                                    n_jobs=args.jobs, progress=not args.quiet,
                                    auto_candidates=args.auto_candidates, time_budget=args.time_budget))
    for spec in args.average or ():
        members = [m for m in spec.split("+") if m]
        if len(members) < 2 or any(m not in models for m in members):
            raise SystemExit(f"--average {spec}: give two or more of the models run ({', '.join(models)}) "
                             "joined by '+'")
        rows.append(averaged_row(" + ".join(members), [members] * len(folds), out, classes=dataset.classes))
    auto_row = next((r for r in rows if r["model"] == "auto"), None)
    if args.auto_top and auto_row is not None:
        tops = [ranking[:args.auto_top] for ranking in auto_row["ranking"]]
        missing = sorted({m for top in tops for m in top} - set(models))
        if missing:
            print(f"auto top-{args.auto_top} average: not computed, {missing} were not run as rows",
                  file=sys.stderr)
        else:
            rows.append(averaged_row(f"auto, mean of its top {args.auto_top}", tops, out,
                                     classes=dataset.classes))
    groups = [g for _, g in held_out]
    table = folds_table(rows) + "\n" + per_fold_table(rows, groups)
    chosen = [f"{r['model']}: " + ", ".join(r["chosen"]) for r in rows
              if r["chosen"] and r["model"].startswith("auto")]
    note = (f"Grouped stratified {len(folds)}-fold over {len(dataset)} clips (group pattern "
            f"{args.group_pattern!r}; seed {args.seed}; fold sizes {[len(f) for f in folds]}); epochs "
            f"{args.epochs or 'model default'}. Neural models pick their best epoch on the held-out fold "
            "(optimistic; the last-epoch columns involve no such choice); classical models have no "
            "epochs. Seconds include feature extraction (cached after the first fold)."
            + ("".join(f"\nPer fold, {c}." for c in chosen)) + "\n")
    print(table + "\n" + note)
    (out / "results.md").write_text(table + "\n" + note, encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"rows": rows, "data": args.data, "folds": len(folds),
                                                  "fold_groups": groups, "fold_paths": folds,
                                                  "group_pattern": args.group_pattern, "seed": args.seed},
                                                 indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
