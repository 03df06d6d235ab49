"""Prediction throughput and memory: old vs new torch path, onnxruntime, bare forward ceilings.

Creates ``--n`` clips like the Eating Sound Collection's (5 s, 44.1 kHz,
stereo, int16 WAV; ``benchmarks/speed.py``'s generator) and, in one run,
prints side by side for a ``cnn`` run (``--run RUN``, else a default ``cnn``
trained here for ``--epochs`` epochs on generated clips with a 10 s window, as
a run trained on clips of mixed length gets):

- predict end to end (features extracted with ``--n-jobs`` processes, no
  cache, then scored): the old torch path (every clip padded to the run's
  window, batches of 64: ``pad_to_window=True``), the new torch path and the
  onnxruntime path (:func:`soundclass.inference.predict.predict_paths`);
- the same with a warm feature cache (onnxruntime);
- the waveform ONNX graph of :mod:`soundclass.inference.export` (front end
  inside the graph) on decoded audio, the alternative to cached features; the
  graph alone (no decoding) is the ceiling the issue measured (237 clips/s);
- the bare forward passes on the same standardized tensors (the ceilings):
  torch module and onnxruntime session, no windowing, no Python around them;
- peak RSS of a subprocess predicting ``--rss-clips`` paths (symbolic links
  to the ``--n`` generated clips, each decoded separately; no cache);
- the featurization ratio against the tutorial pipeline (``speed.py``'s
  functions);
- training samples/s of the default ``cnn`` loop against a bare PyTorch loop
  over the same tensors (:func:`training_overhead`; the mixed-length training
  case takes longer and is in ``benchmarks/train_overhead.py``).

Usage::

    python benchmarks/throughput.py                 # 2000 clips, RSS at 11,000; several minutes
    python benchmarks/throughput.py --quick         # 300 clips, RSS at 1,500
    python benchmarks/throughput.py --run runs/cnn  # an existing cnn run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from soundclass.config import FeatureConfig
from soundclass.extraction.cache import get_features
from soundclass.extraction.extract import extract_many
from soundclass.inference.backends import OnnxLogits, export_logits_onnx, make_backend
from soundclass.inference.checkpoint import load_checkpoint
from soundclass.inference.predict import predict_paths, resolve_checkpoint
from soundclass.inference.predictor import available_cores, predict_proba, torch_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import make_clips, tutorial  # noqa: E402  (the same clips and tutorial as speed.py)


def train_tiny_run(folder: Path, *, epochs: int, n_clips: int, seed: int) -> Path:
    """A default ``cnn`` run on ``n_clips`` generated 5 s clips in 2 classes, 10 s window."""
    from soundclass.data.dataset import discover
    from soundclass.training import TrainConfig, train

    data = folder / "train-data"
    for k, label in enumerate(("crunch", "quiet")):
        (data / label).mkdir(parents=True, exist_ok=True)
        make_clips(data / label, n_clips // 2, seed=seed + 100 + k)
    config = TrainConfig(model="cnn", epochs=epochs, clip_seconds=10.0, val_size=0.25, seed=seed, n_jobs=2)
    train(discover(data), config, out_dir=folder / "run", progress=False)
    return folder / "run"


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def bare_forward(ckpt, features: list[np.ndarray], *, batch_size: int, onnx: OnnxLogits,
                 torch_n: int) -> dict[str, float]:
    """Seconds of the bare torch module (first ``torch_n`` clips) and onnxruntime session on the same tensors."""
    mean = ckpt.norm_mean[:, None] if ckpt.norm_mean is not None else 0.0
    std = ckpt.norm_std[:, None] if ckpt.norm_std is not None else 1.0
    tensors = [((np.stack(features[i : i + batch_size]) - mean) / std).astype(np.float32)
               for i in range(0, len(features), batch_size)]  # (B, n_mels, T), T = the clips' own length
    model = ckpt.model.eval()
    with torch_threads(), torch.inference_mode():
        if torch_n > 0:
            model(torch.from_numpy(tensors[0]))  # warm-up
        start = time.perf_counter()
        for x in tensors[: -(-torch_n // batch_size)]:
            model(torch.from_numpy(x))
        t_torch = time.perf_counter() - start
    onnx(tensors[0])
    start = time.perf_counter()
    for x in tensors:
        onnx.session.run(None, {"features": x})
    t_onnx = time.perf_counter() - start
    return {"torch": t_torch, "onnx": t_onnx}


def waveform_graph(ckpt, paths: list[str], folder: Path) -> tuple[float, float]:
    """Seconds to decode ``paths`` (in this process) and to run the waveform graph on them, one per call."""
    import onnxruntime as ort

    from soundclass.audio import load
    from soundclass.inference.export import export_onnx

    graph = export_onnx(ckpt.path, folder / "waveform.onnx", check=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    waves, t_decode = _timed(lambda: [load(p, sr=ckpt.feature.sr)[0][None] for p in paths])
    session.run(None, {"waveform": waves[0]})
    _, t_graph = _timed(lambda: [session.run(None, {"waveform": y}) for y in waves])
    return t_decode, t_graph


def rss_child(run: str, clips: list[str], n: int, backend: str, n_jobs: int) -> dict:
    """Run predict_paths on ``n`` paths (symlinks to ``clips``) in a fresh process; its peak RSS.

    The child reports ``VmHWM`` (``/proc/self/status``, the peak of its own
    address space) next to ``ru_maxrss``: Linux carries ``ru_maxrss`` across
    ``exec``, so a child started by a large parent reports at least the
    parent's peak.
    """
    with tempfile.TemporaryDirectory(prefix="soundclass-rss-") as tmp:
        links = []
        for i in range(n):
            link = Path(tmp) / f"c{i:05d}.wav"
            os.symlink(clips[i % len(clips)], link)
            links.append(str(link))
        listing = Path(tmp) / "paths.json"
        listing.write_text(json.dumps(links))
        code = (
            "import json, resource, sys, time\n"
            "from soundclass.inference.predict import predict_paths\n"
            "paths = json.load(open(sys.argv[1]))\n"
            "t = time.perf_counter()\n"
            "p = predict_paths(sys.argv[2], paths, backend=sys.argv[3], n_jobs=int(sys.argv[4]), progress=False)\n"
            "dt = time.perf_counter() - t\n"
            "hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')]\n"
            "print(json.dumps({'seconds': dt, 'failed': len(p.failures),"
            " 'hwm_mib': int(hwm[0].split()[1]) / 1024 if hwm else float('nan'),"
            " 'rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,"
            " 'workers_mib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))\n"
        )
        out = subprocess.run([sys.executable, "-c", code, str(listing), run, backend, str(n_jobs)],
                             check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def featurization_ratio(paths: list[str], *, tutorial_n: int, n_jobs: int) -> tuple[float, float]:
    """files/s of the tutorial pipeline and of extract_many (default FeatureConfig, as speed.py)."""
    t_tut, _ = tutorial(paths[:tutorial_n])
    _, t_fast = _timed(lambda: extract_many(paths, FeatureConfig(), n_jobs=n_jobs, progress=False))
    return _rate(tutorial_n, t_tut), _rate(len(paths), t_fast)


def training_overhead(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Training samples/s of the default ``cnn`` loop against a bare PyTorch loop on the same tensors.

    ``benchmarks/train_overhead.py``'s measurement (it also runs the long mixed-length case).
    """
    from train_overhead import overhead_rates

    if args.train_clips_overhead <= 0:
        return []
    r = overhead_rates(n_clips=args.train_clips_overhead, seconds=5.0, epochs=1, repeats=2, seed=args.seed)
    return [("training samples/s (cnn, 5 s clips, batch "
             f"{r['batch_size']}, best of 2)", f"bare PyTorch loop {r['bare']:.1f}, fit without augmentations "
             f"{r['off']:.1f} ({r['bare'] / r['off']:.2f}x the bare loop's time, target <= 1.2x), fit with the "
             f"default augmentations {r['on']:.1f} ({r['bare'] / r['on']:.2f}x)")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="generated 5 s clips to predict (default 2000)")
    parser.add_argument("--old-n", type=int, default=400,
                        help="clips for the old torch path, the slowest (default 400; rates are per clip)")
    parser.add_argument("--torch-n", type=int, default=500, help="clips for the new torch path (default 500)")
    parser.add_argument("--waveform-n", type=int, default=200, help="clips for the waveform graph (default 200)")
    parser.add_argument("--rss-clips", type=int, nargs="*", default=[11000],
                        help="paths for the peak-RSS runs, one subprocess each (none: skip); several sizes "
                             "show whether memory grows with the dataset")
    parser.add_argument("--tutorial-n", type=int, default=20, help="clips for the tutorial pipeline")
    parser.add_argument("--run", default=None, help="an existing cnn run or checkpoint (default: train one)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of the run trained here")
    parser.add_argument("--train-clips", type=int, default=24, help="clips of the run trained here")
    parser.add_argument("--n-jobs", type=int, default=2, help="feature extraction processes")
    parser.add_argument("--batch-size", type=int, default=8, help="pieces per forward pass (new paths)")
    parser.add_argument("--quick", action="store_true",
                        help="--n 300 --old-n 100 --torch-n 150 --waveform-n 60 --rss-clips 1500 "
                             "--train-clips-overhead 64")
    parser.add_argument("--train-clips-overhead", type=int, default=256,
                        help="5 s clips of the training-overhead measurement, at least one batch of 32 "
                             "(0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.old_n, args.torch_n, args.waveform_n, args.rss_clips = 300, 100, 150, 60, [1500]
        args.train_clips_overhead = 64
    args.old_n, args.torch_n, args.waveform_n = (min(v, args.n) for v in (args.old_n, args.torch_n, args.waveform_n))
    if min(args.n, args.old_n, args.torch_n, args.waveform_n, args.tutorial_n, args.n_jobs, args.batch_size) <= 0:
        parser.error("counts must be positive")
    if 0 < args.train_clips_overhead < 32:
        parser.error("--train-clips-overhead must be 0 or at least one batch (32)")

    with tempfile.TemporaryDirectory(prefix="soundclass-throughput-") as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        (paths, t_make) = _timed(lambda: make_clips(tmp / "clips", args.n, seed=args.seed))
        print(f"made {len(paths)} clips (5 s, 44.1 kHz, stereo, int16) in {t_make:.1f} s")
        if args.run is None:
            run, t_train = _timed(lambda: train_tiny_run(tmp, epochs=args.epochs, n_clips=args.train_clips,
                                                         seed=args.seed))
            print(f"trained a default cnn run ({args.train_clips} clips, {args.epochs} epoch(s), 10 s window) "
                  f"in {t_train:.1f} s")
        else:
            run = Path(args.run)
        ckpt = load_checkpoint(resolve_checkpoint(run))
        print(f"model {ckpt.model_name}, window clip_frames={ckpt.clip_frames}; machine: {os.cpu_count()} CPUs "
              f"({available_cores()} usable), load average {os.getloadavg()[0]:.2f}")

        backend_torch = make_backend(ckpt, "torch")
        backend_onnx, t_export = _timed(lambda: make_backend(ckpt, "onnx", cache=False))
        common = {"n_jobs": args.n_jobs, "progress": False, "batch_size": args.batch_size}
        rows: list[tuple[str, int, float]] = []

        (features, _), t_feat = _timed(lambda: get_features(paths, ckpt.feature, n_jobs=args.n_jobs,
                                                            progress=False))
        rows.append((f"features only ({args.n_jobs} procs, no cache)", args.n, t_feat))
        frames = features[0].shape[1]
        start = time.perf_counter()
        predict_proba(ckpt, features[: args.old_n], batch_size=64, pad_to_window=True)
        t_old = time.perf_counter() - start
        rows.append((f"old torch path: pad to {ckpt.clip_frames} frames, batch 64 (features + model)",
                     args.old_n, t_feat * args.old_n / args.n + t_old))
        _, t_new_torch = _timed(lambda: predict_paths(backend_torch, paths[: args.torch_n], **common))
        rows.append(("new torch path, predict_paths end to end", args.torch_n, t_new_torch))
        preds, t_new_onnx = _timed(lambda: predict_paths(backend_onnx, paths, **common))
        rows.append(("onnxruntime path, predict_paths end to end", args.n, t_new_onnx))
        cache_dir = tmp / "cache"
        predict_paths(backend_onnx, paths, cache_dir=cache_dir, **common)  # fills the cache
        _, t_warm = _timed(lambda: predict_paths(backend_onnx, paths, cache_dir=cache_dir, **common))
        rows.append(("onnxruntime path, warm feature cache", args.n, t_warm))
        t_decode, t_graph = waveform_graph(ckpt, paths[: args.waveform_n], tmp)
        rows.append(("waveform ONNX graph (export.py), decode in-process + graph", args.waveform_n,
                     t_decode + t_graph))
        rows.append(("waveform ONNX graph alone, front end inside, 1 clip per call (ceiling)", args.waveform_n,
                     t_graph))
        raw_logits = OnnxLogits(export_logits_onnx(ckpt.model, input_kind=ckpt.input,
                                                   n_features=ckpt.feature.n_features))
        bare = bare_forward(ckpt, features, batch_size=args.batch_size, onnx=raw_logits, torch_n=args.torch_n)
        n_bare = min(len(features), -(-args.torch_n // args.batch_size) * args.batch_size)
        rows.append((f"bare torch forward, batch {args.batch_size} (ceiling)", n_bare, bare["torch"]))
        rows.append((f"bare onnxruntime forward, batch {args.batch_size} (ceiling)", args.n, bare["onnx"]))
        sweep = {}
        for b in (1, 2, 4, 8, 16, 32):  # what DEFAULT_BATCH_SIZE was chosen from
            sub = features[: min(len(features), 16 * b, 256)]
            sweep[b] = _rate(len(sub), bare_forward(ckpt, sub, batch_size=b, onnx=raw_logits, torch_n=0)["onnx"])
        same = np.abs(preds.proba - predict_proba(ckpt, features)).max()
        del features

        make_backend(ckpt, "auto")  # caches the graph in the run folder, as a first predict would
        rss = {n: rss_child(str(run), paths, n, "auto", args.n_jobs) for n in args.rss_clips if n > 0}
        tut_rate, fast_rate = featurization_ratio(paths[: min(args.n, 600)], tutorial_n=args.tutorial_n,
                                                  n_jobs=args.n_jobs)
        extra = training_overhead(args)

    print(f"\nclips of {frames} frames (5 s); every rate below was measured in this run")
    print(f"{'predict path':72s} {'clips':>6s} {'clips/s':>9s}")
    for label, n, t in rows:
        print(f"{label:72s} {n:6d} {_rate(n, t):9.1f}")
    r = dict(zip(("features", "old", "torch", "onnx", "warm", "waveform", "graph", "bare_torch", "bare_onnx"),
                 (_rate(n, t) for _, n, t in rows), strict=True))
    old, e2e_onnx, e2e_torch = r["old"], r["onnx"], r["torch"]
    print()
    print(f"onnxruntime end to end vs old torch path: {e2e_onnx / old:.1f}x (target >= 5x); "
          f"new torch vs old: {e2e_torch / old:.1f}x")
    print(f"onnxruntime end to end: {e2e_onnx:.0f} clips/s (target >= 200 on 2 cores)")
    print(f"the exported graph alone (waveform in, front end inside: what the issue measured as the bare "
          f"onnxruntime forward) / end to end = {r['graph'] / e2e_onnx:.2f}x (target <= 1.3x)")
    print(f"the model part alone (features in, the logits graph) / end to end = {r['bare_onnx'] / e2e_onnx:.2f}x "
          f"cold, {r['bare_onnx'] / r['warm']:.2f}x warm cache (cold, features and model share the 2 cores)")
    print(f"cached features + logits graph vs waveform graph: "
          f"{e2e_onnx / r['waveform']:.1f}x (why the dataset path runs the model part only)")
    print("bare onnxruntime forward by batch size: "
          + ", ".join(f"{b}: {v:.0f}" for b, v in sweep.items()) + " clips/s")
    print(f"onnx logits graph export + check: {t_export:.1f} s (once per checkpoint, then cached)")
    print(f"max |onnxruntime - torch| probability on the {args.n} clips: {same:.1e}")
    for n, m in rss.items():
        print(f"peak RSS predicting {n} clips (backend auto, no cache): {m['hwm_mib']:.0f} MiB main "
              f"process (VmHWM; ru_maxrss {m['rss_mib']:.0f}, inherited from this process across exec), "
              f"{m['workers_mib']:.0f} MiB largest worker; {m['seconds']:.0f} s, "
              f"{n / m['seconds']:.0f} clips/s, {m['failed']} failed (target < 1 GB)")
    print(f"featurization: tutorial {tut_rate:.1f} files/s, extract_many {fast_rate:.1f} files/s: "
          f"{fast_rate / tut_rate:.1f}x (target >= 20x)")
    for label, value in extra:
        print(f"{label}: {value}")
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this benchmark process peaked at {rss_self:.0f} MiB; it holds all {args.n} features on purpose)")
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=FutureWarning)
    sys.exit(main())
