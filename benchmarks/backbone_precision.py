"""aiSFX backbone precisions: float32 vs int8 onnxruntime graphs, in embeddings, speed and probe accuracy.

For each labelled folder (default: FSDD and DonateACry under
``$SOUNDCLASS_DATASETS`` or ``../shared/datasets``, grouped by speaker and by
recording device), every clip is decoded and cut into aiSFX blocks once, then
embedded by the onnxruntime graph of each ``--precisions``
(:func:`soundclass.models.backbone_runtime.backbone_runner`).  It prints:

- the largest ``|embedding - float32 embedding|`` and the smallest cosine
  similarity of a block's embedding with its float32 one; the float32 graph's
  own difference from torch on ``--torch-blocks`` blocks;
- blocks/s of a one-thread session (what each pool worker runs);
- the ``aisfx-probe`` accuracy (logistic regression, as ``auto`` fits it) in
  grouped ``--folds``-fold cross-validation, every clip tested once, and its
  change from float32 in points (the issue's bar for a quantized default:
  within 0.5 point on both sets).

Usage::

    python benchmarks/backbone_precision.py                    # FSDD + DonateACry, ~10 min on 2 cores
    python benchmarks/backbone_precision.py DIR --group-pattern REGEX --limit 200
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from soundclass.audio import load
from soundclass.data.dataset import discover
from soundclass.data.splits import kfold
from soundclass.dsp.aisfx import AISFX_SR, aisfx_blocks
from soundclass.inference.predictor import predict_logits
from soundclass.models.aisfx import AISFX_BACKBONE, embed_blocks
from soundclass.models.backbone_runtime import PRECISIONS, backbone_runner
from soundclass.training.classical import fit_classical

DATASETS = Path(os.environ.get("SOUNDCLASS_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
#: Group of a file name: FSDD's speaker (``{digit}_{speaker}_{n}.wav``), DonateACry's device UUID.
KNOWN = {"fsdd": r"^\d+_(?P<group>[a-z]+)_", "donateacry": r"^(?P<group>[0-9A-Fa-f-]{36})-"}


def _groups(paths: list[str], pattern: str) -> list[str]:
    rx = re.compile(pattern)
    out = []
    for p in paths:
        m = rx.search(os.path.basename(p))
        if m is None:
            raise SystemExit(f"{p}: no match for --group-pattern {pattern!r}")
        out.append(m.group("group"))
    return out


def probe_accuracy(feats: list[np.ndarray], y: np.ndarray, groups: list[str], *, folds: int, n_classes: int,
                   seed: int) -> float:
    """Grouped k-fold accuracy of ``aisfx-probe`` on block embeddings ``(512, n_blocks)``; every clip tested once."""
    correct = 0
    for train_idx, test_idx in kfold(y, n_splits=folds, groups=groups, seed=seed):
        model = fit_classical("aisfx-probe", [feats[i] for i in train_idx], y[train_idx], seed=seed,
                              n_classes=n_classes)
        logits = predict_logits(model, [feats[i] for i in test_idx], input_kind="sequence", clip_frames=None)
        correct += int((logits.argmax(1) == y[test_idx]).sum())
    return correct / len(y)


def one_thread_rate(blocks: np.ndarray, precision: str, n: int) -> float:
    """Blocks/s of a one-thread session, batches of 8, after a warm-up."""
    run = backbone_runner(AISFX_BACKBONE, runtime="onnx", precision=precision, threads=1)
    sub = blocks[:n]
    run(sub[:8])
    start = time.perf_counter()
    for i in range(0, len(sub), 8):
        run(sub[i : i + 8])
    return len(sub) / (time.perf_counter() - start)


def measure(data: Path, pattern: str, args: argparse.Namespace) -> list[dict]:
    ds = discover(data)
    paths, y = list(ds.paths), np.asarray(ds.targets)
    if args.limit:
        keep = np.random.default_rng(args.seed).permutation(len(paths))[: args.limit]
        paths, y = [paths[i] for i in sorted(keep)], y[np.sort(keep)]
    groups = _groups(paths, pattern)
    t0 = time.perf_counter()
    blocks = [aisfx_blocks(load(p, sr=AISFX_SR)[0]) for p in paths]  # (n_blocks, 100, 96) per clip
    flat = np.concatenate(blocks)
    print(f"{data.name}: {len(paths)} clips, {len(ds.classes)} classes, {len(set(groups))} groups, "
          f"{len(flat)} blocks (decoded and cut in {time.perf_counter() - t0:.0f} s)", flush=True)
    ref_torch = embed_blocks(flat[: args.torch_blocks], runtime="torch")
    rows, ref = [], None
    for precision in args.precisions:
        t0 = time.perf_counter()
        emb = [embed_blocks(b, runtime="onnx", precision=precision) for b in blocks]  # (n_blocks, 512) each
        seconds = time.perf_counter() - t0
        e = np.concatenate(emb)
        ref = e if ref is None else ref
        cos = np.sum(e * ref, 1) / np.maximum(np.linalg.norm(e, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        acc = probe_accuracy([np.ascontiguousarray(b.T) for b in emb], y, groups, folds=args.folds,
                             n_classes=len(ds.classes), seed=args.seed)
        rows.append({"data": data.name, "precision": precision, "accuracy": acc,
                     "max_diff": float(np.abs(e - ref).max()), "min_cos": float(cos.min()),
                     "torch_diff": float(np.abs(e[: args.torch_blocks] - ref_torch).max()),
                     "max_abs": float(np.abs(ref).max()),
                     "rate1": one_thread_rate(flat, precision, args.rate_blocks), "embed_s": seconds})
        r = rows[-1]
        print(f"  {precision:<13} accuracy {acc:.4f}  max|d| vs float32 {r['max_diff']:.3g}  "
              f"min cos {r['min_cos']:.5f}  max|d| vs torch {r['torch_diff']:.3g}  "
              f"1-thread {r['rate1']:.1f} blocks/s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="*", help="labelled folders (default: fsdd and donateacry)")
    parser.add_argument("--group-pattern", default=None, help="regex with a 'group' capture (default: known sets)")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=0, help="clips per set at most (0: all)")
    parser.add_argument("--torch-blocks", type=int, default=64, help="blocks compared with torch")
    parser.add_argument("--rate-blocks", type=int, default=96, help="blocks of the one-thread speed runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.precisions[0] != "float32":
        args.precisions = ["float32", *[p for p in args.precisions if p != "float32"]]  # the reference first
    folders = [Path(d) for d in args.data] or [DATASETS / name for name in KNOWN]
    rows = []
    for folder in folders:
        pattern = args.group_pattern or KNOWN.get(folder.name)
        if not folder.is_dir() or pattern is None:
            print(f"{folder}: absent or no known group pattern: skipped")
            continue
        rows += measure(folder, pattern, args)
    if not rows:
        return 0
    print("\n| set | precision | probe accuracy | vs float32 | max abs diff vs float32 (max abs value) "
          "| min cosine | 1-thread blocks/s |")
    print("|---|---|---|---|---|---|---|")
    base = {r["data"]: r["accuracy"] for r in rows if r["precision"] == "float32"}
    for r in rows:
        print(f"| {r['data']} | {r['precision']} | {100 * r['accuracy']:.2f} % | "
              f"{100 * (r['accuracy'] - base[r['data']]):+.2f} pt | {r['max_diff']:.3g} ({r['max_abs']:.3g}) | "
              f"{r['min_cos']:.5f} | {r['rate1']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
