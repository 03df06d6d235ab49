"""Feature extraction speed: the tutorial pipeline against soundclass's fast path.

Creates ``--n`` clips like the Eating Sound Collection's (5 s, 44.1 kHz,
stereo, int16 WAV) in a temporary folder, then times, in one run:

- the tutorial: ``librosa.load(path, res_type='kaiser_fast')`` +
  ``librosa.feature.melspectrogram``, serially, on ``--tutorial-n`` clips;
- ``soundclass.extraction.extract.extract_many`` with the default ``FeatureConfig``
  (log-mel, 128 bands, 22.05 kHz) on ``--n-jobs`` processes, on all clips,
  once with the pool start-up included ("cold") and once on a started pool ("warm").

It prints files/s of each, their ratio, peak memory and the largest
difference in dB between soundclass and librosa (``res_type='soxr_hq'``, the
resampler soundclass uses) on a few clips.  Usage::

    python benchmarks/speed.py                 # 600 clips, 2 processes
    python benchmarks/speed.py --n 400 --n-jobs 4 --kind melspectrogram
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from soundclass.config import FeatureConfig
from soundclass.extraction.extract import extract_many
from soundclass.util.executors import make_executor

SR = 44100
SECONDS = 5.0


def make_clips(folder: Path, n: int, *, seed: int = 0) -> list[str]:
    """``n`` different 5 s stereo 44.1 kHz int16 clips: noise bursts and tones."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(SR * SECONDS)) / SR
    paths = []
    for i in range(n):
        freqs = rng.uniform(80, 6000, size=3)
        tones = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) for f in freqs) / 3
        envelope = (rng.random(t.size // 2205 + 1) < 0.3).repeat(2205)[: t.size]  # 50 ms crunches
        noise = rng.standard_normal((t.size, 2)) * (0.02 + 0.3 * envelope)[:, None]
        stereo = 0.3 * tones[:, None] * np.array([1.0, 0.7]) + noise
        path = folder / f"clip_{i:04d}.wav"
        sf.write(path, np.clip(stereo, -1, 1).astype(np.float32), SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


def tutorial(paths: list[str]) -> tuple[float, str]:
    """Seconds for the tutorial pipeline over ``paths`` (after one warm-up file)."""
    res_type = "kaiser_fast"
    try:
        import resampy  # noqa: F401  (librosa needs it for kaiser_fast)
    except ImportError:
        res_type = "soxr_hq"
        print("note: resampy is not installed; the tutorial runs with res_type='soxr_hq' "
              "(faster than kaiser_fast, so the ratio below is conservative)", file=sys.stderr)
    y, sr = librosa.load(paths[0], res_type=res_type)
    librosa.feature.melspectrogram(y=y, sr=sr)
    start = time.perf_counter()
    for path in paths:
        y, sr = librosa.load(path, res_type=res_type)
        librosa.feature.melspectrogram(y=y, sr=sr)
    return time.perf_counter() - start, res_type


def max_db_difference(results, config: FeatureConfig, k: int) -> float:
    """Largest |dB| gap to librosa (soxr_hq load + the same feature) over the first ``k`` files."""
    worst = 0.0
    for result in results[:k]:
        y, sr = librosa.load(result.path, sr=config.sr, res_type="soxr_hq")
        ref = librosa.feature.melspectrogram(
            y=y, sr=sr, n_fft=config.n_fft, hop_length=config.hop_length, n_mels=config.n_mels
        )
        ref_db = librosa.power_to_db(ref, top_db=config.top_db)
        ours = result.feature
        if config.kind == "melspectrogram":
            ours = librosa.power_to_db(ours, top_db=config.top_db)
        worst = max(worst, float(np.abs(ours - ref_db).max()))
    return worst


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory (MiB) of this process and of its largest finished child."""
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return self_kib / 1024, child_kib / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=600,
                        help="clips for soundclass (default 600; real datasets have thousands, and with few "
                             "clips the pool start-up weighs on the cold number)")
    parser.add_argument("--tutorial-n", type=int, default=40, help="clips for the tutorial (default 40)")
    parser.add_argument("--n-jobs", type=int, default=2, help="soundclass worker processes (default 2)")
    parser.add_argument("--kind", choices=("logmel", "melspectrogram"), default="logmel")
    parser.add_argument("--check-n", type=int, default=5, help="clips compared with librosa (default 5)")
    parser.add_argument("--dir", type=Path, default=None, help="write the clips here instead of a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.n, args.tutorial_n, args.n_jobs) <= 0:
        parser.error("--n, --tutorial-n and --n-jobs must be positive")

    config = FeatureConfig(kind=args.kind)
    with tempfile.TemporaryDirectory(prefix="soundclass-speed-") as tmp:
        folder = args.dir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths = make_clips(folder, max(args.n, args.tutorial_n), seed=args.seed)
        print(f"made {len(paths)} clips (5 s, 44.1 kHz, stereo, int16) in {time.perf_counter() - t0:.1f} s")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other work slows both)")

        t_tut, res_type = tutorial(paths[: args.tutorial_n])
        tut_rate = args.tutorial_n / t_tut

        start = time.perf_counter()
        results = extract_many(paths[: args.n], config, n_jobs=args.n_jobs)
        cold = args.n / (time.perf_counter() - start)
        failed = [r for r in results if not r.ok]
        if failed:
            print(f"error: {len(failed)} clips failed, e.g. {failed[0].path}: {failed[0].error}")
            return 1

        with make_executor("process", n_jobs=args.n_jobs) as pool:
            extract_many(paths[: args.n_jobs], config, executor=pool, chunksize=1)  # start workers
            start = time.perf_counter()
            extract_many(paths[: args.n], config, executor=pool)
            warm = args.n / (time.perf_counter() - start)

        gap = max_db_difference(results, config, args.check_n)
        rss_self, rss_child = peak_rss_mib()

    print()
    print(f"{'pipeline':66s} {'files':>6s} {'files/s':>9s}")
    print(f"{f'tutorial: librosa.load({res_type!r}) + melspectrogram, 1 proc':66s} {args.tutorial_n:6d} {tut_rate:9.1f}")
    print(f"{f'soundclass extract_many ({args.kind}), {args.n_jobs} procs, cold':66s} {args.n:6d} {cold:9.1f}")
    print(f"{f'soundclass extract_many ({args.kind}), {args.n_jobs} procs, warm pool':66s} {args.n:6d} {warm:9.1f}")
    print()
    print(f"speed-up: {cold / tut_rate:.1f}x cold, {warm / tut_rate:.1f}x warm (target >= 20x)")
    print(f"peak memory: {rss_self:.0f} MiB main process, {rss_child:.0f} MiB largest worker")
    print(f"max |dB difference| vs librosa (soxr_hq) on {min(args.check_n, args.n)} clips: {gap:.2e} dB")
    return 0


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=FutureWarning)
    sys.exit(main())
