"""Training throughput: the default model's real loop against a bare PyTorch loop, and padding waste.

Two measurements, in one process, on generated clips (log-mel features of the
default ``cnn`` computed once, in memory, with soundclass's own extractor):

1. **Overhead.**  Samples/s of :func:`soundclass.training.fit` (sampler,
   crops, augmentation, loss, optimizer, LR schedule, checkpoint and state
   writes every epoch; no validation) against a bare loop over the same
   tensors: the same model, AdamW, cross-entropy, the same batch size, no
   augmentation, nothing else.  Every clip has the same length, so the real
   loop's crops are the whole clips and both loops see the same tensors.
   The ratio is reported with the default augmentations (mixup, SpecAugment,
   time stretch: real work, not waste) and with them off (target <= 1.2x).
2. **Mixed lengths.**  ``--n-mixed`` clips (default 875) whose durations are
   drawn log-normally with median 2.5 s, the longest set to 40 s (seeded):
   time for ``--epochs`` epochs and validation accuracy of the old crop rule
   (the 90th percentile of the durations clamped to [0.5 s, 10 s], every batch
   padded to it: ``clip_seconds`` set to that value, ``bucket=False``) and of
   the default (the 90th percentile but at most twice the median; with this
   much padding, length-bucketed batches each cropped/padded to its own longest clip),
   plus the share of padding in the training inputs and the user/sys CPU time.
3. **Real data** (``--datasets``, default the shared FSDD and DonateACry when
   present): the crop and the bucketing each rule picks for every
   cross-validation fold's training part (durations from the file headers).
   Where both rules pick the same crop without bucketing, training sees the
   same inputs under both, so its accuracy cannot move.

Usage::

    python benchmarks/train_overhead.py                 # ~10 min on a quiet 2-core machine
    python benchmarks/train_overhead.py --epochs 3 --n-overhead 256 --overhead-epochs 2

The machine's load changes every figure: compare only figures of one run.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from soundclass.extraction.extract import compute_feature
from soundclass.models import create_model
from soundclass.training import TrainConfig, feature_config, fit, resolve_config
from soundclass.training.data import bucket_from_data, clip_seconds_from_data, make_loaders

CLASSES = ("low", "mid", "high", "sweep", "clicks")
SR = 16000
MODEL = "cnn"  # the default of `soundclass train` is auto; this measures the default neural loop


def _clip(kind: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A noisy clip with sound events of class ``kind`` about once a second."""
    n = max(int(seconds * SR), SR // 10)
    y = 0.05 * rng.standard_normal(n)
    t_ev = np.arange(int(0.25 * SR)) / SR
    n_events = max(1, rng.poisson(seconds))
    for _ in range(n_events):
        start = int(rng.integers(0, max(1, n - t_ev.size)))
        f0 = rng.uniform(0.9, 1.1) * (300, 1000, 3000)[kind] if kind < 3 else 0.0
        if kind == 3:
            ev = np.sin(2 * np.pi * (400 + 8000 * t_ev) * t_ev)
        elif kind == 4:
            ev = (rng.random(t_ev.size) < 0.01) * rng.standard_normal(t_ev.size) * 4
        else:
            ev = sum(np.sin(2 * np.pi * f0 * h * t_ev) / h for h in (1, 2, 3))
        ev = ev * np.hanning(t_ev.size) * rng.uniform(0.2, 0.6)
        stop = min(n, start + ev.size)
        y[start:stop] += ev[: stop - start]
    return (y * rng.uniform(0.3, 1.0)).astype(np.float32)


def make_features(durations: np.ndarray, *, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Default-``cnn`` log-mel features of generated clips of ``durations`` seconds, and their classes."""
    rng = np.random.default_rng(seed)
    feature = feature_config(resolve_config(TrainConfig(model=MODEL)))
    y = np.arange(durations.size) % len(CLASSES)
    rng.shuffle(y)
    feats = [compute_feature(_clip(int(k), float(d), rng), feature) for k, d in zip(y, durations, strict=True)]
    return feats, y.astype(np.int64)


def mixed_durations(n: int, *, seed: int, median: float = 2.5, longest: float = 40.0,
                    sigma: float = 1.1) -> np.ndarray:
    """``n`` log-normal durations (median ``median``, log-std ``sigma``: the 90th percentile is
    ~10 s) clipped to [0.3 s, longest]; the longest is set to ``longest``."""
    rng = np.random.default_rng(seed)
    d = np.clip(np.exp(rng.normal(np.log(median), sigma, size=n)), 0.3, longest)
    d[int(np.argmax(d))] = longest
    return d


def bare_loop(feats: list[np.ndarray], y: np.ndarray, *, batch_size: int, epochs: int, lr: float,
              seed: int) -> float:
    """Seconds of a bare loop: model, AdamW, cross-entropy, shuffled equal-length batches."""
    torch.manual_seed(seed)
    x_all = torch.from_numpy(np.stack(feats))  # (N, n_mels, T)
    y_all = torch.from_numpy(y)
    model = create_model("cnn", n_classes=len(CLASSES), n_features=x_all.shape[1])
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    t0 = time.perf_counter()
    for _ in range(epochs):
        perm = torch.randperm(len(y_all))
        for s in range(0, len(perm) - batch_size + 1, batch_size):  # drop_last, as fit
            idx = perm[s : s + batch_size]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def fit_seconds(feats, y, val_feats, val_y, config: TrainConfig) -> tuple[float, dict]:
    """Wall seconds of :func:`fit` and its best history row (by validation macro-F1 when validated).

    The row also has ``clip_seconds``, ``train_seconds`` (the epochs' own
    seconds) and the process's ``user``/``sys`` CPU seconds during the fit.
    """
    with tempfile.TemporaryDirectory() as tmp:
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        res = fit(feats, y, val_feats, val_y, classes=CLASSES, config=config, out_dir=tmp, progress=False)
        seconds, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    best = max(res.history, key=lambda r: r["val_macro_f1"] if val_y.size else r["epoch"])
    return seconds, {**best, "clip_seconds": res.config.clip_seconds, "bucket": res.config.bucket,
                     "user": r1.ru_utime - r0.ru_utime,
                     "sys": r1.ru_stime - r0.ru_stime, "train_seconds": sum(r["seconds"] for r in res.history)}


def padding_share(feats, config: TrainConfig, clip_frames: int) -> float:
    """Share of padded frames in one epoch of the training loader of ``config``."""
    loader = make_loaders(feats, np.zeros(len(feats), np.int64), config=resolve_config(config),
                          n_classes=len(CLASSES), clip_frames=clip_frames)
    ds, total, real = loader.dataset, 0, 0
    for batch in loader.batch_sampler:
        x, _ = ds.__getitems__(batch)
        total += x.shape[0] * x.shape[2]
        real += int(np.minimum(ds.lengths[batch], x.shape[2]).sum())
    return 1.0 - real / total


def overhead_rates(*, n_clips: int, seconds: float, epochs: int, repeats: int, seed: int) -> dict[str, float]:
    """Samples/s of the bare loop and of :func:`fit` without and with the default augmentations.

    Interleaved ``repeats`` times, the best of each counts (the machine's load drifts).
    """
    feats, y = make_features(np.full(n_clips, seconds), seed=seed)
    base = resolve_config(TrainConfig(model=MODEL, seed=seed, epochs=epochs, patience=0,
                                      clip_seconds=seconds, val_size=0))
    plain = base.replace(mixup_alpha=0.0, spec_augment=False, time_stretch=0.0, freq_warp=0.0)
    n = (n_clips // base.batch_size) * base.batch_size * epochs
    if n == 0:
        raise SystemExit(f"the overhead measurement needs at least one batch ({base.batch_size} clips)")
    empty = np.zeros(0, np.int64)
    rows = []
    for _ in range(repeats):
        rows.append((bare_loop(feats, y, batch_size=base.batch_size, epochs=epochs, lr=base.lr, seed=seed),
                     fit_seconds(feats, y, [], empty, plain)[0], fit_seconds(feats, y, [], empty, base)[0]))
    bare, off, on = (min(col) for col in zip(*rows, strict=True))
    return {"bare": n / bare, "off": n / off, "on": n / on, "batch_size": base.batch_size,
            "threads": torch.get_num_threads()}


def overhead_table(r: dict[str, float]) -> str:
    """The overhead rates of :func:`overhead_rates` as a markdown table (ratio = time / bare time)."""
    return "\n".join([
        "| loop | samples/s | ratio to bare |", "|---|---|---|",
        f"| bare PyTorch (model, AdamW, cross-entropy) | {r['bare']:.1f} | 1.00 |",
        f"| fit, augmentations off | {r['off']:.1f} | {r['bare'] / r['off']:.2f} |",
        f"| fit, default augmentations (mixup, SpecAugment, time stretch) | {r['on']:.1f} | "
        f"{r['bare'] / r['on']:.2f} |"])


def overhead(args) -> None:
    r = overhead_rates(n_clips=args.n_overhead, seconds=args.overhead_seconds, epochs=args.overhead_epochs,
                       repeats=args.repeats, seed=args.seed)
    print(f"## Overhead: {args.n_overhead} clips of {args.overhead_seconds:g} s, batch {r['batch_size']}, "
          f"{args.overhead_epochs} epochs, {r['threads']} torch threads, best of {args.repeats}")
    print(overhead_table(r))
    print()


def mixed(args) -> None:
    d = mixed_durations(args.n_mixed, seed=args.seed)
    feats, y = make_features(d, seed=args.seed + 1)
    n_val = args.n_mixed // 5
    tr, va = slice(n_val, None), slice(0, n_val)
    tr_f, va_f = feats[tr], feats[va]
    print(f"## Mixed lengths: {args.n_mixed} clips (median {np.median(d):.2f} s, longest {d.max():.0f} s), "
          f"{args.n_mixed - n_val} train / {n_val} validation, {args.epochs} epochs")
    print("| crop rule | clip_seconds | padding share | train s | fit s (with validation) | user / sys CPU s | "
          "best val accuracy | best val macro-F1 |\n|---|---|---|---|---|---|---|---|")
    frame_rate = feature_config(resolve_config(TrainConfig(model=MODEL))).frame_rate
    old_clip = clip_seconds_from_data([f.shape[1] for f in tr_f], frame_rate=frame_rate, median_ratio=None)
    for name, changes in (("before: 90th percentile, every batch padded to it",
                           {"clip_seconds": old_clip, "bucket": False}),
                          ("after: 90th percentile <= 2x median, bucketed batches", {})):
        cfg = TrainConfig(model=MODEL, seed=args.seed, epochs=args.epochs, patience=0, **changes)
        seconds, best = fit_seconds(tr_f, y[tr], va_f, y[va], cfg)
        clip_frames = int(round(best["clip_seconds"] * frame_rate))
        share = padding_share(tr_f, cfg.replace(bucket=best["bucket"]), clip_frames)
        print(f"| {name} | {best['clip_seconds']:.2f} | {share:.0%} | {best['train_seconds']:.1f} | "
              f"{seconds:.1f} | {best['user']:.0f} / {best['sys']:.0f} | {best['val_accuracy']:.3f} | "
              f"{best['val_macro_f1']:.3f} |", flush=True)
    print()


#: The shared datasets and their group patterns (leave-one-speaker-out; one fold per device).
REAL_DATASETS = {
    "fsdd": r"^\d+_(?P<group>[a-z]+)_",
    "donateacry": r"^(?P<group>[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})-",
}


def crop_rules(folder: Path, pattern: str) -> dict[str, Any]:
    """Crops of the old and the default rule over every group-held-out training part of ``folder``."""
    from soundclass.audio import info
    from soundclass.data.dataset import assign_groups, discover

    frame_rate = feature_config(resolve_config(TrainConfig(model=MODEL))).frame_rate
    dataset = assign_groups(discover(folder), pattern)
    frames = np.array([int(info(it.path).duration * frame_rate) + 1 for it in dataset.items])
    groups = np.array([it.group for it in dataset.items])
    folds = []
    for g in sorted(set(groups)):
        part = frames[groups != g]
        old = clip_seconds_from_data(part, frame_rate=frame_rate, median_ratio=None)
        new = clip_seconds_from_data(part, frame_rate=frame_rate)
        bucket = bucket_from_data(part, clip_frames=max(1, int(round(new * frame_rate))))
        folds.append((old, new, bucket))
    return {"clips": len(frames), "median_s": float(np.median(frames) / frame_rate), "folds": folds}


def real_data(args) -> None:
    print("## Real data: the crop each rule picks for every group-held-out training part")
    print("| dataset | clips | median s | held-out groups | old crop s | default crop s | bucketed | training |\n"
          "|---|---|---|---|---|---|---|---|")
    for folder in args.datasets:
        pattern = REAL_DATASETS.get(Path(folder).name)
        if pattern is None or not Path(folder).is_dir():
            print(f"| {folder} | (absent or no known group pattern: skipped) | | | | | | |")
            continue
        r = crop_rules(Path(folder), pattern)
        old = [f[0] for f in r["folds"]]
        new = [f[1] for f in r["folds"]]
        same = all(abs(o - n) < 1e-9 and not b for o, n, b in r["folds"])
        print(f"| {Path(folder).name} | {r['clips']} | {r['median_s']:.2f} | {len(r['folds'])} | "
              f"{min(old):.2f}-{max(old):.2f} | {min(new):.2f}-{max(new):.2f} | "
              f"{sum(f[2] for f in r['folds'])} of {len(r['folds'])} | "
              f"{'identical inputs in every fold' if same else 'differs'} |", flush=True)
    print()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-overhead", type=int, default=512, help="clips of the overhead measurement")
    p.add_argument("--overhead-seconds", type=float, default=2.5, help="their length")
    p.add_argument("--overhead-epochs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="interleaved repetitions (the best counts)")
    p.add_argument("--n-mixed", type=int, default=875, help="clips of the mixed-length case")
    p.add_argument("--epochs", type=int, default=10, help="epochs of the mixed-length case")
    p.add_argument("--seed", type=int, default=0)
    shared = Path(__file__).resolve().parents[2] / "shared" / "datasets"
    p.add_argument("--datasets", nargs="*", default=[str(shared / name) for name in REAL_DATASETS],
                   help="class-per-folder datasets for the real-data section (default: the shared FSDD and "
                        "DonateACry; absent ones are skipped)")
    p.add_argument("--skip", choices=("overhead", "mixed", "real"), action="append", default=[])
    args = p.parse_args(argv)
    if "overhead" not in args.skip:
        overhead(args)
    if "mixed" not in args.skip:
        mixed(args)
    if "real" not in args.skip:
        real_data(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
