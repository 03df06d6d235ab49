"""Peak memory of training with the features in memory and streamed from the feature cache.

Generates ``--n`` different 5 s stereo 44.1 kHz clips in two classes
(:func:`speed.make_clips`), then trains the default ``cnn`` for ``--epochs``
epoch(s) on them twice, each in a fresh process: once without a cache (every
feature is held in memory, as before issue #9 item 4) and once with
``cache_dir`` (a cold cache: the features are computed, written and then read
batch by batch).  Both runs extract their features the same way (worker
processes, whose memory is not counted) and train the same model on the same
split; near-duplicate detection is off in both, so only the features differ.

Printed: the resident memory of each training process once its features
are ready (``VmRSS`` after :func:`~soundclass.training.trainer.prepare_data`:
what holding the features costs), its peak (``VmHWM`` of
``/proc/self/status``, the process's own peak; ``ru_maxrss`` next to it, which
Linux carries across ``exec`` from the parent), the seconds, the validation
accuracy (equal in both, the check that the two trained the same model), the
size of the features themselves and the ratio of the two peaks.  The peak
also holds the model's activations and gradients of one batch, the same in
both runs, so the ratio grows with the number of clips.

Usage::

    python benchmarks/train_memory.py               # 1500 clips; several minutes on 2 cores
    python benchmarks/train_memory.py --quick       # 300 clips
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from speed import SECONDS, make_clips

CHILD = """
import json, resource, sys, time
from soundclass.data.dataset import discover
from soundclass.training import TrainConfig
from soundclass.training.config import resolve_config
from soundclass.training.trainer import prepare_data, train_prepared

def status(key):
    line = [ln for ln in open("/proc/self/status") if ln.startswith(key)]
    return int(line[0].split()[1]) / 1024 if line else float("nan")

root, out, cache, epochs, batch, jobs = sys.argv[1:7]
config = resolve_config(TrainConfig(model="cnn", epochs=int(epochs), batch_size=int(batch), n_jobs=int(jobs),
                                    near_duplicates=0.0, cache_dir=cache or None))
t = time.perf_counter()
data = prepare_data(discover(root), config, progress=False)  # what train() does, in its two steps
ready = status("VmRSS")
res = train_prepared(data, config, out_dir=out, progress=False)
print(json.dumps({
    "seconds": time.perf_counter() - t,
    "val_accuracy": res.history[-1]["val_accuracy"],
    "ready_mib": ready,
    "hwm_mib": status("VmHWM"),
    "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def train_child(root: Path, out: Path, cache: Path | None, *, epochs: int, batch_size: int,
                n_jobs: int) -> dict:
    """Train ``cnn`` on ``root`` in a fresh process; its peak RSS, seconds and validation accuracy."""
    cmd = [sys.executable, "-c", CHILD, str(root), str(out), "" if cache is None else str(cache),
           str(epochs), str(batch_size), str(n_jobs)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def feature_mib(n: int) -> float:
    """MiB of the features of ``n`` clips of :data:`speed.SECONDS` for the default ``cnn`` (float32)."""
    from soundclass.models import model_spec

    feature = model_spec("cnn").feature
    frames = int(SECONDS * feature.sr) // feature.hop_length + 1
    return n * feature.n_features * frames * 4 / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500, help="clips (two classes)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--n-jobs", type=int, default=2, help="feature extraction workers")
    parser.add_argument("--quick", action="store_true", help="--n 300")
    args = parser.parse_args(argv)
    if args.quick:
        args.n = 300
    with tempfile.TemporaryDirectory(prefix="soundclass-train-memory-") as tmp:
        root = Path(tmp) / "data"
        for k, label in enumerate(("a", "b")):
            folder = root / label
            folder.mkdir(parents=True)
            make_clips(folder, args.n // 2 + (args.n % 2 if k == 0 else 0), seed=k)
        kw = {"epochs": args.epochs, "batch_size": args.batch_size, "n_jobs": args.n_jobs}
        memory = train_child(root, Path(tmp) / "run-memory", None, **kw)
        streamed = train_child(root, Path(tmp) / "run-cache", Path(tmp) / "cache", **kw)
    print(f"training cnn, {args.n} clips of {SECONDS:g} s, {args.epochs} epoch(s), batch {args.batch_size}; "
          f"the features alone: {feature_mib(args.n):.0f} MiB")
    print("| features | RSS with the features ready | peak RSS (VmHWM) | ru_maxrss | seconds | val accuracy |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, m in (("in memory (no cache)", memory), ("streamed from the cache (cache_dir)", streamed)):
        print(f"| {name} | {m['ready_mib']:.0f} MiB | {m['hwm_mib']:.0f} MiB | {m['rss_mib']:.0f} MiB | "
              f"{m['seconds']:.1f} | {m['val_accuracy']:.3f} |")
    print(f"peak RSS ratio, in memory / streamed: {memory['hwm_mib'] / streamed['hwm_mib']:.2f}x "
          f"(difference {memory['hwm_mib'] - streamed['hwm_mib']:.0f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
