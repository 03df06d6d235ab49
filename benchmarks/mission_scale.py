"""The mission's scale: the README's two commands, with their defaults, on an Eating-Sound-sized set.

Generates a set shaped like the Eating Sound Collection: ``--classes`` foods
x ``--per-class`` clips of ``--min-seconds``..``--max-seconds`` s, 44.1 kHz
stereo 16-bit WAV, plus a flat test folder of ``--test`` clips from other
recordings (:func:`soundclass.data.synth.food_clip`, what
``make_food_dataset`` writes, here on every core).  Then it runs, through
the real CLI in subprocesses and with nothing but the README's flags:

    soundclass train DATA -o RUN --cache-dir CACHE
    soundclass predict RUN TEST -o submit.csv

and prints per command: wall time, peak RSS of its process tree (the sum over
the process and its workers, sampled every 0.2 s with psutil, as is the
tree's CPU time; and the largest
single process from ``RUSAGE_CHILDREN``, shown only when it grew: it
accumulates over the commands), clips/s; for ``train`` what ``auto``
decided and why (``RUN/auto.json``: per candidate its folds, its seconds of
features, clips/s of the features stage (decoding included) and seconds per
fold fit, and the notes), and the final fit.  Accuracy on synthetic sound
means little; time and memory are what this measures.

Usage::

    python benchmarks/mission_scale.py                       # 20 x 550 + 2,000 clips (run on an idle machine)
    python benchmarks/mission_scale.py --classes 4 --per-class 10 --test 20 --time-budget 60
    python benchmarks/mission_scale.py --keep /tmp/mission   # keep the data, run and cache
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

from soundclass.data.synth import FOOD_CLASSES, food_clip
from soundclass.training import TrainConfig
from soundclass.util.pool import run_chunked

SR = 44100


def make_clip(spec: tuple[str, int, int, int], *, seconds: tuple[float, float], seed: int) -> str:
    """Write one clip, ``spec = (path, class index, source, n)``, by :func:`soundclass.data.synth.food_clip`."""
    path, c, source, n = spec
    sf.write(path, food_clip(c, source=source, n=n, sr=SR, seconds=seconds, seed=seed), SR, subtype="PCM_16")
    return path


def _failed(spec, reason: str, kind: str) -> str:
    raise SystemExit(f"{spec[0]}: could not be generated ({reason})")


def make_set(root: Path, *, classes: int, per_class: int, test: int, seconds: tuple[float, float], seed: int,
             jobs: int | None) -> tuple[Path, Path]:
    """Write ``root/data/<food>/<food>_<source>_<n>.wav`` (8 recordings per class, as
    :func:`~soundclass.data.synth.make_food_dataset` names them) and ``root/test/test_<j>.wav``
    (recordings not in the training set), on ``jobs`` processes."""
    specs = []
    for c, food in enumerate(FOOD_CLASSES[:classes]):
        (root / "data" / food).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            source, n = i % 8, i // 8
            specs.append((str(root / "data" / food / f"{food}_{source:02d}_{n:03d}.wav"), c, source, n))
    (root / "test").mkdir(parents=True, exist_ok=True)
    labels = np.random.default_rng([seed, 7]).integers(classes, size=test)
    for j, c in enumerate(labels):
        specs.append((str(root / "test" / f"test_{j:05d}.wav"), int(c), 100 + j % 8, j))
    import mission_scale  # the workers unpickle make_clip by module name: never from a script's __main__

    run_chunked(functools.partial(mission_scale.make_clip, seconds=seconds, seed=seed), specs,
                on_failure=_failed, n_jobs=jobs)
    return root / "data", root / "test"


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill ``proc`` (started here) and its descendants, by pid."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in [*family]:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.kill()


def run_measured(cmd: list[str], *, log: Path | None = None, timeout: float | None = None) -> dict:
    """Run ``cmd``; wall seconds, CPU seconds and peak RSS of its process tree, and its largest process.

    The tree (the command, its fork server and workers) is sampled every
    0.2 s with psutil: the peak of the summed RSS, and the CPU time of every
    process as last seen (a process's last 0.2 s before it exits are missed).
    A command still running after ``timeout`` seconds is killed with its
    workers (exit code ``None``).  ``log``: where its output goes (``None``:
    captured and returned as ``stdout``).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak, cpu = [0], {}
    start = time.perf_counter()
    with (open(log, "w+b") if log else tempfile.TemporaryFile()) as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
        stop = threading.Event()

        def sample() -> None:
            try:
                root = psutil.Process(proc.pid)
            except psutil.NoSuchProcess:
                return
            while not stop.is_set():
                total = 0
                try:
                    family = [root, *root.children(recursive=True)]
                except psutil.NoSuchProcess:
                    break
                for p in family:
                    try:
                        with p.oneshot():
                            total += p.memory_info().rss
                            t = p.cpu_times()
                            cpu[p.pid] = t.user + t.system
                    except psutil.NoSuchProcess:
                        pass
                peak[0] = max(peak[0], total)
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            proc.wait()
            code = None
        stop.set()
        sampler.join()
        out.seek(0)
        text = out.read().decode(errors="replace")
    seconds = time.perf_counter() - start
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"code": code, "seconds": seconds, "tree_mib": peak[0] / 2**20, "cpu_s": sum(cpu.values()),
            "largest_mib": largest / 1024 if largest > before else float("nan"), "stdout": text}


def auto_lines(run: Path, n_clips: int) -> list[str]:
    """What ``auto`` decided and why, from ``RUN/auto.json``."""
    path = run / "auto.json"
    if not path.is_file():
        return [f"auto: no {path.name} (a single model was trained)"]
    rec = json.loads(path.read_text())
    lines = [f"auto: chose {rec['chosen']} after {rec['seconds']:.0f} s of a {rec['time_budget']:.0f} s budget "
             f"(grouped {rec['folds']}-fold on {rec['n_train']} training clips)"]
    for row in rec["candidates"]:
        feat = row.get("feature_seconds")
        folds = row.get("folds", 0)
        fit = (row["seconds"] - (feat or 0.0)) / folds if folds else float("nan")
        stage = (f"features {feat:.0f} s ({n_clips / feat:.1f} clips/s, decoding included)"
                 if feat else "features -")
        score = f"macro-F1 {row['macro_f1_mean']:.3f}" if "macro_f1_mean" in row else row["status"]
        lines.append(f"  {'*' if row['model'] == rec['chosen'] else ' '} {row['model']:<15} {score}; "
                     f"{stage}; {folds}/{row.get('of_folds', '?')} folds, {fit:.1f} s per fold fit"
                     + (f"; {row['note']}" if row.get("note") else ""))
    lines += [f"  note: {n}" for n in rec.get("notes", [])]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=550)
    parser.add_argument("--test", type=int, default=2000, help="clips of the test folder")
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--max-seconds", type=float, default=7.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gen-jobs", type=int, default=None, help="processes generating the clips (default: all)")
    parser.add_argument("--time-budget", type=float, default=None,
                        help="pass --time-budget to train (default: not passed, the README's command)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="kill a command (and its workers) still running after this many seconds")
    parser.add_argument("--keep", default=None, metavar="DIR", help="work in DIR and keep it (default: a temp dir)")
    args = parser.parse_args(argv)
    if min(args.classes, args.per_class, args.test) <= 0 or not 0 < args.min_seconds <= args.max_seconds:
        parser.error("sizes must be positive and --min-seconds <= --max-seconds")
    if args.classes > len(FOOD_CLASSES):
        parser.error(f"--classes must be at most {len(FOOD_CLASSES)}")

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="soundclass-mission-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        n_train = args.classes * args.per_class
        t0 = time.perf_counter()
        data, test = make_set(root, classes=args.classes, per_class=args.per_class, test=args.test,
                              seconds=(args.min_seconds, args.max_seconds), seed=args.seed, jobs=args.gen_jobs)
        audio_s = sum(sf.info(str(p)).duration for p in root.glob("*/**/*.wav"))
        print(f"generated {n_train} training clips ({args.classes} classes) + {args.test} test clips, "
              f"{audio_s / 3600:.2f} h of 44.1 kHz stereo int16 audio, in {time.perf_counter() - t0:.0f} s")
        print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        run, cache, sub = root / "run", root / "cache", root / "submit.csv"
        for folder in (run, cache):
            shutil.rmtree(folder, ignore_errors=True)
        cli = [sys.executable, "-m", "soundclass"]
        train_cmd = [*cli, "train", str(data), "-o", str(run), "--cache-dir", str(cache)]
        if args.time_budget is not None:
            train_cmd += ["--time-budget", str(args.time_budget)]
        predict_cmd = [*cli, "predict", str(run), str(test), "-o", str(sub)]
        rows = []
        for label, cmd, n in (("train", train_cmd, n_train), ("predict", predict_cmd, args.test)):
            print(f"$ soundclass {' '.join(cmd[3:])}", flush=True)
            m = run_measured(cmd, log=root / f"{label}.log", timeout=args.timeout)
            if m["code"] != 0:
                tail = (root / f"{label}.log").read_text(errors="replace")[-2000:]
                why = f"timed out after {args.timeout} s" if m["code"] is None else f"exit code {m['code']}"
                print(f"{label} failed ({why}):\n{tail}")
                return 1
            rows.append((label, n, m))
            if label == "train":
                for line in auto_lines(run, n_train):
                    print(line)
                rec = json.loads((run / "auto.json").read_text()) if (run / "auto.json").is_file() else None
                if rec is not None:
                    print(f"  final fit of {rec['chosen']} and evaluation: {m['seconds'] - rec['seconds']:.0f} s "
                          "(after the choice; includes start-up)")
        n_rows = sum(1 for _ in open(sub, encoding="utf-8")) - 1
        print("\n| command | clips | wall s | clips/s | CPU s (process tree) | peak RSS, process tree "
              "| largest process |")
        print("|---|---|---|---|---|---|---|")
        for label, n, m in rows:
            largest = "-" if np.isnan(m["largest_mib"]) else f"{m['largest_mib']:.0f} MiB"
            print(f"| {label} | {n} | {m['seconds']:.1f} | {n / m['seconds']:.1f} | {m['cpu_s']:.0f} | "
                  f"{m['tree_mib']:.0f} MiB | {largest} |")
        print(f"\nsubmission rows: {n_rows} of {args.test}")
        budget = args.time_budget or TrainConfig().time_budget  # the default the command ran with
        train_s, predict_s = rows[0][2]["seconds"], rows[1][2]["seconds"]
        print(f"targets: train {train_s:.0f} s vs --time-budget {budget:.0f} s (issue: 30 min); peak RSS "
              f"{max(m['tree_mib'] for _, _, m in rows):.0f} MiB (< 4096); predict {predict_s:.0f} s (< 90 s "
              "for 2,000 clips)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
