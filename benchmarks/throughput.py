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
- every predict path above and the featurization ratio are measured once per
  round, ``--repeat`` rounds (all paths in turn within a round, so the VM's
  drift hits them alike); the table gives the median and range, the ratios
  are medians of the ratios within each round;
- training samples/s of the default ``cnn`` loop against a bare PyTorch loop
  over the same tensors (:func:`training_overhead`; the mixed-length training
  case takes longer and is in ``benchmarks/train_overhead.py``).

With ``--model aisfx-probe`` or ``whisper-probe``, the probe-model table
instead (:func:`probe_main`): a probe run trained here on generated clips,
``predict_paths`` end to end on the ``--n`` 5-s clips (default backend and
``--n-jobs`` workers, no cache: what ``soundclass predict`` does), the bare
onnxruntime forward pass of the frozen backbone on the same clips' inputs
(decoded and cut beforehand), one session with every core and one with one
thread, the bare torch forward (the fallback) with every core, and the ratio
of end to end to the bare onnxruntime forward.

Usage::

    python benchmarks/throughput.py                 # 2000 clips, RSS at 11,000; several minutes
    python benchmarks/throughput.py --model aisfx-probe --n 300   # the probe model's table
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

from soundclass.checkpoint.format import load_checkpoint, resolve_checkpoint
from soundclass.config import FeatureConfig
from soundclass.extraction.cache import get_features
from soundclass.extraction.extract import extract_many
from soundclass.inference.backends import OnnxLogits, export_logits_onnx, make_backend
from soundclass.inference.export import export_onnx
from soundclass.inference.predict import predict_paths
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


def waveform_session(graph: Path):
    """An onnxruntime session of the exported waveform graph, with the cores predict uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cores()
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def waveform_graph(session, ckpt, paths: list[str]) -> tuple[float, float]:
    """Seconds to decode ``paths`` (in this process) and to run the waveform graph on them, one per call."""
    from soundclass.audio import load

    waves, t_decode = _timed(lambda: [load(p, sr=ckpt.feature.sr)[0][None] for p in paths])
    session.run(None, {"waveform": waves[0]})
    _, t_graph = _timed(lambda: [session.run(None, {"waveform": y}) for y in waves])
    return t_decode, t_graph


class PredictPaths:
    """Every predict path of the table, each measured once per :meth:`one_round` on the same clips."""

    def __init__(self, *, ckpt, paths: list[str], backend_torch, backend_onnx, raw_logits: OnnxLogits,
                 graph: Path, cache_dir: Path, args: argparse.Namespace):
        self.ckpt, self.paths, self.args, self.cache_dir = ckpt, paths, args, cache_dir
        self.backend_torch, self.backend_onnx, self.raw_logits = backend_torch, backend_onnx, raw_logits
        self.session = waveform_session(graph)
        self.features: list[np.ndarray] = []
        self.preds = None

    def one_round(self) -> dict[str, tuple[str, int, float]]:
        """``key -> (label, clips, seconds)`` of every path, in the order of the printed table."""
        a, ckpt, paths = self.args, self.ckpt, self.paths
        common = {"n_jobs": a.n_jobs, "progress": False, "batch_size": a.batch_size}
        out: dict[str, tuple[str, int, float]] = {}
        self.features = []  # this round's features replace the last round's
        (self.features, _), t_feat = _timed(lambda: get_features(paths, ckpt.feature, n_jobs=a.n_jobs,
                                                                 progress=False))
        out["features"] = (f"features only ({a.n_jobs} procs, no cache)", a.n, t_feat)
        old = self.features[: a.old_n]
        _, t_old = _timed(lambda: predict_proba(ckpt, old, batch_size=64, pad_to_window=True))
        out["old"] = (f"old torch path: pad to {ckpt.clip_frames} frames, batch 64 (features + model)",
                      a.old_n, t_feat * a.old_n / a.n + t_old)
        _, t = _timed(lambda: predict_paths(self.backend_torch, paths[: a.torch_n], **common))
        out["torch"] = ("new torch path, predict_paths end to end", a.torch_n, t)
        self.preds, t = _timed(lambda: predict_paths(self.backend_onnx, paths, **common))
        out["onnx"] = ("onnxruntime path, predict_paths end to end", a.n, t)
        if not self.cache_dir.exists():
            predict_paths(self.backend_onnx, paths, cache_dir=self.cache_dir, **common)  # fills the cache
        _, t = _timed(lambda: predict_paths(self.backend_onnx, paths, cache_dir=self.cache_dir, **common))
        out["warm"] = ("onnxruntime path, warm feature cache", a.n, t)
        t_decode, t_graph = waveform_graph(self.session, ckpt, paths[: a.waveform_n])
        out["waveform"] = ("waveform ONNX graph (export.py), decode in-process + graph", a.waveform_n,
                           t_decode + t_graph)
        out["graph"] = ("waveform ONNX graph alone, front end inside, 1 clip per call (ceiling)", a.waveform_n,
                        t_graph)
        bare = bare_forward(ckpt, self.features, batch_size=a.batch_size, onnx=self.raw_logits, torch_n=a.torch_n)
        n_bare = min(len(self.features), -(-a.torch_n // a.batch_size) * a.batch_size)
        out["bare_torch"] = (f"bare torch forward, batch {a.batch_size} (ceiling)", n_bare, bare["torch"])
        out["bare_onnx"] = (f"bare onnxruntime forward, batch {a.batch_size} (ceiling)", a.n, bare["onnx"])
        return out


def median_rates(rounds: list[dict[str, tuple[str, int, float]]]) -> dict[str, tuple[float, float, float]]:
    """``key -> (median, lowest, highest)`` clips/s over the rounds."""
    rates = {k: [_rate(n, t) for _, n, t in (r[k] for r in rounds)] for k in rounds[0]}
    return {k: (float(np.median(v)), min(v), max(v)) for k, v in rates.items()}


def median_ratio(rounds: list[dict[str, tuple[str, int, float]]], num: str, den: str) -> float:
    """Median over the rounds of ``rate(num) / rate(den)``, each ratio taken within one round."""
    return float(np.median([_rate(*r[num][1:]) / _rate(*r[den][1:]) for r in rounds]))


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


PROBE_MODELS = ("aisfx-probe", "whisper-probe")


def train_probe_run(folder: Path, model: str, *, n_per_class: int, seed: int) -> Path:
    """A ``model`` run on the 4-class demo set at 44.1 kHz (``n_per_class`` clips per class), in this process."""
    from soundclass.data import synth
    from soundclass.training import TrainConfig, train

    data = synth.make_demo_dataset(folder / "probe-data", n_per_class=n_per_class, sr=44100, n_sources=2,
                                   seed=seed)
    train(data, TrainConfig(model=model, val_size=0.25, seed=seed, n_jobs=1), out_dir=folder / "run",
          progress=False)
    return folder / "run"


def backbone_inputs(ckpt, paths: list[str]) -> tuple[object, list[np.ndarray], float]:
    """The checkpoint's frozen backbone, its input for each clip, and the seconds to decode and compute them."""
    from soundclass.audio import load
    from soundclass.models.backbone_runtime import feature_backbones

    found = feature_backbones(ckpt.feature.kind)
    if len(found) != 1:
        raise SystemExit(f"{ckpt.model_name}: feature kind {ckpt.feature.kind!r} has {len(found)} registered "
                         "backbones, not one")
    found = found[0]
    sr = ckpt.feature.sr
    inputs, t = _timed(lambda: [found.inputs(load(p, sr=sr)[0], sr=sr) for p in paths])
    return found.backbone, inputs, t


def bare_backbone(backbone, inputs: list[np.ndarray], *, threads: int) -> float:
    """Seconds of the bare onnxruntime session (``threads`` intra-op threads) over every clip's input."""
    from soundclass.models.backbone_runtime import backbone_runner

    run = backbone_runner(backbone, runtime="onnx", threads=threads)
    run(inputs[0])  # warm-up
    return _timed(lambda: [run(x) for x in inputs])[1]


def bare_torch(backbone, inputs: list[np.ndarray]) -> float:
    """Seconds of the backbone's torch module (the fallback runner, torch's default threads) over every input."""
    from soundclass.models.backbone_runtime import backbone_runner

    run = backbone_runner(backbone, runtime="torch")
    run(inputs[0])  # warm-up
    return _timed(lambda: [run(x) for x in inputs])[1]


def tree_cpu(run: Path, paths: list[str], n_jobs: int) -> tuple[float, float]:
    """``predict_paths`` in a fresh process: CPU seconds of its whole tree (workers and fork server included;
    ``mission_scale.run_measured`` samples it) and the wall seconds of the call itself."""
    from mission_scale import run_measured

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(paths, fh)
    code = ("import json, sys, time\n"
            "from soundclass.inference.predict import predict_paths\n"
            "paths = json.load(open(sys.argv[1]))\n"
            "t = time.perf_counter()\n"
            "predict_paths(sys.argv[2], paths, n_jobs=int(sys.argv[3]), progress=False)\n"
            "print(time.perf_counter() - t)\n")
    try:
        m = run_measured([sys.executable, "-c", code, fh.name, str(run), str(n_jobs)])
    finally:
        os.unlink(fh.name)
    if m["code"] != 0:
        raise SystemExit(f"predict in a fresh process failed ({m['code']}): {m['stdout'][-1000:]}")
    return m["cpu_s"], float(m["stdout"].strip().splitlines()[-1])


def probe_main(args: argparse.Namespace) -> int:
    """The probe-model table: end to end predict vs the bare backbone forward, ``--repeat`` rounds."""
    from soundclass.models import list_models

    if args.model not in list_models():
        raise SystemExit(f"--model {args.model}: not registered in this soundclass (models: "
                         f"{', '.join(m for m in PROBE_MODELS if m in list_models())})")
    cores = available_cores()
    with tempfile.TemporaryDirectory(prefix="soundclass-throughput-") as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        paths, t_make = _timed(lambda: make_clips(tmp / "clips", args.n, seed=args.seed))
        print(f"made {len(paths)} clips (5 s, 44.1 kHz, stereo, int16) in {t_make:.1f} s")
        run = Path(args.run) if args.run else None
        if run is None:
            run, t_train = _timed(lambda: train_probe_run(tmp, args.model, n_per_class=args.probe_train_clips,
                                                          seed=args.seed))
            print(f"trained a {args.model} run ({4 * args.probe_train_clips} demo clips) in {t_train:.1f} s")
        ckpt = load_checkpoint(resolve_checkpoint(run))
        print(f"model {ckpt.model_name}; machine: {os.cpu_count()} CPUs ({cores} usable), load average "
              f"{os.getloadavg()[0]:.2f}")
        backbone, inputs, t_inputs = backbone_inputs(ckpt, paths)
        n_items = sum(len(x) for x in inputs)
        rounds = []
        for rep in range(args.repeat):
            preds, t_e2e = _timed(lambda: predict_paths(run, paths, n_jobs=args.n_jobs, progress=False))
            t_all = bare_backbone(backbone, inputs, threads=cores)
            cpu0 = time.process_time()
            t_one = bare_backbone(backbone, inputs, threads=1)
            cpu_one = time.process_time() - cpu0
            cpu_small, _ = tree_cpu(run, paths[: args.probe_startup_clips], args.n_jobs)
            cpu_all, _ = tree_cpu(run, paths, args.n_jobs)
            cpu_clip = (cpu_all - cpu_small) / max(args.n - args.probe_startup_clips, 1)
            t_torch = bare_torch(backbone, inputs)
            rounds.append({"e2e": t_e2e, "bare": t_all, "one": t_one, "torch": t_torch, "cpu_clip": cpu_clip,
                           "cpu_one": cpu_one / args.n, "cpu_start": cpu_small})
            print(f"round {rep + 1}/{args.repeat}: end to end {_rate(args.n, t_e2e):.1f}, bare backbone "
                  f"{_rate(args.n, t_all):.1f} ({cores} threads), {_rate(args.n, t_one):.1f} (1 thread), "
                  f"bare torch {_rate(args.n, t_torch):.1f} clips/s", flush=True)
    med = {k: float(np.median([r[k] for r in rounds])) for k in rounds[0]}
    ratio = float(np.median([r["e2e"] / r["bare"] for r in rounds]))
    print(f"\n{args.n} clips of 5 s ({n_items} backbone inputs, {n_items / args.n:.1f} per clip); medians of "
          f"{args.repeat} round(s)")
    print(f"{'path':78s} {'clips/s':>8s}")
    rows = [(f"{args.model} predict_paths end to end ({args.n_jobs} jobs, default backend, no cache)", med["e2e"]),
            (f"bare onnxruntime forward of the backbone, 1 session x {cores} threads (ceiling)", med["bare"]),
            ("bare onnxruntime forward of the backbone, 1 session x 1 thread", med["one"]),
            (f"bare torch forward of the backbone (the fallback), {torch.get_num_threads()} threads", med["torch"]),
            ("decode + backbone input (front end), in this process", t_inputs)]
    for label, seconds in rows:
        print(f"{label:78s} {_rate(args.n, seconds):8.1f}")
    e2e = _rate(args.n, med["e2e"])
    print(f"\n{args.model} end to end: {e2e:.1f} clips/s (target >= 30 on 2 cores)")
    print(f"end to end / bare backbone forward time = {ratio:.2f}x (target <= 1.3x; median of the per-round "
          f"ratios)")
    print(f"CPU seconds per clip (less sensitive to a shared machine's load than clips/s): end to end "
          f"{med['cpu_clip']:.3f} (a fresh process's whole tree, its start-up of {med['cpu_start']:.1f} CPU s "
          f"removed by a {args.probe_startup_clips}-clip run), bare one-thread backbone {med['cpu_one']:.3f}: "
          f"{med['cpu_clip'] / med['cpu_one']:.2f}x; {cores} idle cores would give "
          f"{cores / med['cpu_clip']:.1f} clips/s end to end")
    print(f"{len(preds.failures)} failed")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn", choices=("cnn", *PROBE_MODELS),
                        help="cnn: the default table; a probe model: the backbone table (probe_main)")
    parser.add_argument("--probe-train-clips", type=int, default=6,
                        help="demo clips per class (4 classes) of the probe run trained here")
    parser.add_argument("--probe-startup-clips", type=int, default=4,
                        help="clips of the small fresh-process run whose CPU time is the start-up (probe table)")
    parser.add_argument("--n", type=int, default=2000, help="generated 5 s clips to predict (default 2000)")
    parser.add_argument("--old-n", type=int, default=400,
                        help="clips for the old torch path, the slowest (default 400; rates are per clip)")
    parser.add_argument("--torch-n", type=int, default=500, help="clips for the new torch path (default 500)")
    parser.add_argument("--waveform-n", type=int, default=200, help="clips for the waveform graph (default 200)")
    parser.add_argument("--rss-clips", type=int, nargs="*", default=[11000],
                        help="paths for the peak-RSS runs, one subprocess each (none: skip); several sizes "
                             "show whether memory grows with the dataset")
    parser.add_argument("--tutorial-n", type=int, default=20, help="clips for the tutorial pipeline")
    parser.add_argument("--run", default=None, help="an existing run or checkpoint of --model (default: train one)")
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
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of every predict path and of the featurization ratio; the medians are "
                             "reported (default 3: this VM's speed drifts by a fifth between minutes)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.old_n, args.torch_n, args.waveform_n, args.rss_clips = 300, 100, 150, 60, [1500]
        args.train_clips_overhead = 64
    args.old_n, args.torch_n, args.waveform_n = (min(v, args.n) for v in (args.old_n, args.torch_n, args.waveform_n))
    if min(args.n, args.old_n, args.torch_n, args.waveform_n, args.tutorial_n, args.n_jobs, args.batch_size,
           args.repeat) <= 0:
        parser.error("counts must be positive")
    if 0 < args.train_clips_overhead < 32:
        parser.error("--train-clips-overhead must be 0 or at least one batch (32)")
    if args.model != "cnn":
        return probe_main(args)

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
        raw_logits = OnnxLogits(export_logits_onnx(ckpt.model, input_kind=ckpt.input,
                                                   n_features=ckpt.feature.n_features))
        graph = export_onnx(ckpt.path, tmp / "waveform.onnx", check=False)
        paths_ = PredictPaths(ckpt=ckpt, paths=paths, backend_torch=backend_torch, backend_onnx=backend_onnx,
                              raw_logits=raw_logits, graph=graph, cache_dir=tmp / "cache", args=args)
        reps = []
        for rep in range(args.repeat):  # every path once per round: the VM's drift hits all of them alike
            reps.append(paths_.one_round())
            print(f"round {rep + 1}/{args.repeat}: " + ", ".join(
                f"{k} {_rate(n, t):.0f}" for k, (_, n, t) in reps[-1].items()) + " clips/s", flush=True)
        features = paths_.features
        frames = features[0].shape[1]
        sweep = {}
        for b in (1, 2, 4, 8, 16, 32):  # what DEFAULT_BATCH_SIZE was chosen from
            sub = features[: min(len(features), 16 * b, 256)]
            sweep[b] = _rate(len(sub), bare_forward(ckpt, sub, batch_size=b, onnx=raw_logits, torch_n=0)["onnx"])
        same = np.abs(paths_.preds.proba - predict_proba(ckpt, features)).max()
        del features, paths_

        make_backend(ckpt, "auto")  # caches the graph in the run folder, as a first predict would
        rss = {n: rss_child(str(run), paths, n, "auto", args.n_jobs) for n in args.rss_clips if n > 0}
        feat_rounds = [featurization_ratio(paths[: min(args.n, 600)], tutorial_n=args.tutorial_n,
                                           n_jobs=args.n_jobs) for _ in range(args.repeat)]
        extra = training_overhead(args)

    med = median_rates(reps)
    print(f"\nclips of {frames} frames (5 s); every rate below was measured in this run, each path once per "
          f"round, {args.repeat} round(s): the median, and the range over the rounds")
    print(f"{'predict path':72s} {'clips':>6s} {'clips/s':>9s} {'range':>13s}")
    for key, (label, n, _) in reps[0].items():
        m, lo, hi = med[key]
        print(f"{label:72s} {n:6d} {m:9.1f} {lo:6.1f}-{hi:<6.1f}")
    e2e_onnx = med["onnx"][0]
    print()
    print(f"onnxruntime end to end vs old torch path: {median_ratio(reps, 'onnx', 'old'):.1f}x (target >= 5x); "
          f"new torch vs old: {median_ratio(reps, 'torch', 'old'):.1f}x (medians of the per-round ratios)")
    print(f"onnxruntime end to end: {e2e_onnx:.0f} clips/s median (target >= 200 on 2 cores)")
    print(f"the exported graph alone (waveform in, front end inside: what the issue measured as the bare "
          f"onnxruntime forward) / end to end = {median_ratio(reps, 'graph', 'onnx'):.2f}x (target <= 1.3x)")
    print(f"the model part alone (features in, the logits graph) / end to end = "
          f"{median_ratio(reps, 'bare_onnx', 'onnx'):.2f}x cold, {median_ratio(reps, 'bare_onnx', 'warm'):.2f}x "
          f"warm cache (cold, features and model share the 2 cores)")
    print(f"cached features + logits graph vs waveform graph: "
          f"{median_ratio(reps, 'onnx', 'waveform'):.1f}x (why the dataset path runs the model part only)")
    print("bare onnxruntime forward by batch size: "
          + ", ".join(f"{b}: {v:.0f}" for b, v in sweep.items()) + " clips/s")
    print(f"onnx logits graph export + check: {t_export:.1f} s (once per checkpoint, then cached)")
    print(f"max |onnxruntime - torch| probability on the {args.n} clips: {same:.1e}")
    for n, m in rss.items():
        print(f"peak RSS predicting {n} clips (backend auto, no cache): {m['hwm_mib']:.0f} MiB main "
              f"process (VmHWM; ru_maxrss {m['rss_mib']:.0f}, inherited from this process across exec), "
              f"{m['workers_mib']:.0f} MiB largest worker; {m['seconds']:.0f} s, "
              f"{n / m['seconds']:.0f} clips/s, {m['failed']} failed (target < 1 GB)")
    ratios = [fast / tut for tut, fast in feat_rounds]
    print(f"featurization: tutorial {np.median([t for t, _ in feat_rounds]):.1f} files/s, extract_many "
          f"{np.median([f for _, f in feat_rounds]):.1f} files/s: {np.median(ratios):.1f}x median of "
          f"{len(ratios)} round(s) (range {min(ratios):.1f}-{max(ratios):.1f}x; target >= 20x)")
    for label, value in extra:
        print(f"{label}: {value}")
    rss_self = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this benchmark process peaked at {rss_self:.0f} MiB; it holds all {args.n} features on purpose)")
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=FutureWarning)
    sys.exit(main())
