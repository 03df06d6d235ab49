"""Quick check: ``aisfx-probe`` vs ``mfcc-svm`` vs ``logmel-logreg`` on one grouped split.

Uses the library functions directly (no trainer): features by
:func:`soundclass.extraction.extract.extract_many` and
:func:`soundclass.models.aisfx.aisfx_embedding`, fits by
:func:`soundclass.training.classical.fit_classical`, probabilities by the
fitted torch modules (:func:`soundclass.inference.predictor.predict_logits`).

Usage::

    # FSDD, speaker lucas held out
    python benchmarks/probe_check.py ../shared/datasets/fsdd \\
        --group-pattern '^\\d+_(?P<group>[a-z]+)_' --test-group lucas
    # DonateACry, device-grouped 80/20 holdout (the device is the leading UUID)
    python benchmarks/probe_check.py ../shared/datasets/donateacry \\
        --group-pattern '^(?P<group>[0-9A-Fa-f-]{36})-'
"""

from __future__ import annotations

import argparse
import os
import re
import time

import numpy as np

from soundclass.audio import load
from soundclass.data.dataset import discover
from soundclass.data.splits import holdout
from soundclass.dsp.aisfx import AISFX_SR
from soundclass.evaluation.metrics import evaluate_predictions
from soundclass.extraction.extract import extract_many
from soundclass.inference.predictor import predict_logits
from soundclass.models import model_spec
from soundclass.models.aisfx import aisfx_embedding
from soundclass.training.classical import fit_classical

MODELS = ("mfcc-svm", "logmel-logreg", "aisfx-probe")


def _groups(paths: list[str], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    out = []
    for p in paths:
        m = rx.search(p.rsplit("/", 1)[-1])
        if m is None:
            raise SystemExit(f"{p}: no match for --group-pattern {pattern!r}")
        out.append(m.group("group"))
    return out


def _embeddings(paths: list[str], cache: str | None) -> list[np.ndarray]:
    """aiSFX block embeddings (512, n_blocks) per clip, kept in an optional .npz keyed by path."""
    stored = {}
    if cache and os.path.exists(cache):
        with np.load(cache) as data:
            stored = {k: data[k] for k in data.files}
    feats = []
    for p in paths:
        key = p.replace("/", "|")
        if key not in stored:
            y, sr = load(p, sr=AISFX_SR)
            stored[key] = aisfx_embedding(y, sr)
        feats.append(stored[key])
    if cache:
        np.savez(cache, **stored)
    return feats


def _features(name: str, paths: list[str], n_jobs: int, cache: str | None) -> list[np.ndarray]:
    if name == "aisfx-probe":
        return _embeddings(paths, cache)
    results = extract_many(paths, model_spec(name).feature, n_jobs=n_jobs)
    bad = [r for r in results if not r.ok]
    if bad:
        print(f"  {name}: {len(bad)} files failed, e.g. {bad[0].path}: {bad[0].error}")
    return [r.feature for r in results]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data")
    parser.add_argument("--group-pattern", required=True)
    parser.add_argument("--test-group", default=None,
                        help="hold out exactly this group (default: grouped 80/20 holdout)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--embedding-cache", default=None, metavar="NPZ",
                        help="keep the aiSFX block embeddings in this .npz between runs")
    args = parser.parse_args(argv)

    ds = discover(args.data)
    paths, y = ds.paths, np.asarray(ds.targets)
    groups = _groups(paths, args.group_pattern)
    if args.test_group is not None:
        test = np.array([g == args.test_group for g in groups])
        train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    else:
        train_idx, test_idx = holdout(y, test_size=0.2, groups=groups, seed=args.seed)
    print(f"{args.data}: {len(paths)} clips, {len(ds.classes)} classes, "
          f"{len(set(groups))} groups; train {len(train_idx)}, test {len(test_idx)}")
    print(f"{'model':<14} {'accuracy':>8} {'macro_f1':>8} {'feat_s':>7} {'fit_s':>6}")
    for name in args.models:
        t0 = time.perf_counter()
        feats = _features(name, paths, args.jobs, args.embedding_cache)
        t1 = time.perf_counter()
        tr = [i for i in train_idx if feats[i] is not None]
        te = [i for i in test_idx if feats[i] is not None]
        model = fit_classical(name, [feats[i] for i in tr], y[tr], seed=args.seed,
                              n_classes=len(ds.classes))
        t2 = time.perf_counter()
        logits = predict_logits(model, [feats[i] for i in te], input_kind="sequence",
                                clip_frames=None)
        pred = np.full(len(test_idx), -1)  # a test clip without features counts as wrong
        pred[np.isin(test_idx, te)] = logits.argmax(1)
        m = evaluate_predictions(y[test_idx], np.where(pred < 0, (y[test_idx] + 1) % len(ds.classes), pred),
                                 classes=ds.classes)
        print(f"{name:<14} {m['accuracy']:>8.3f} {m['macro_f1']:>8.3f} {t1 - t0:>7.1f} {t2 - t1:>6.1f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
