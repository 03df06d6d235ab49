"""Near-duplicate search speed: the pair-by-pair search against the batched one.

Fingerprints every clip below a dataset folder once (cached by content hash
in ``--cache-dir``; not timed), then times, in one run:

- the old search, ``reference_near_duplicate_pairs`` from
  ``tests/fingerprint_reference.py`` (pair by pair, as before batching);
- :func:`soundclass.data.fingerprint.near_duplicate_pairs`, with where its
  time goes: the pre-filters, each upper-bound stage and the exact scores,
  with the number of pairs each one is given.

It prints wall and CPU seconds of both, their ratio, whether the flagged pairs
are identical and the largest score difference.  Usage::

    python benchmarks/near_duplicates.py ../shared/datasets/donateacry
    python benchmarks/near_duplicates.py ../shared/datasets/fsdd --limit 1000 --threshold 0.6
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import soundclass.data.fingerprint as fingerprint_module
from soundclass.data.dataset import list_audio
from soundclass.data.near_duplicates import fingerprint_files
from soundclass.util.hashing import sha256_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fingerprint_reference import reference_near_duplicate_pairs  # noqa: E402  (the oracle of the tests)


def load_fingerprints(root: str, *, cache_dir: str, n_jobs: int, limit: int | None) -> list[np.ndarray | None]:
    paths = list_audio(root)[:limit]
    hashes = [sha256_file(p) for p in paths]
    return fingerprint_files(paths, hashes=hashes, cache_dir=cache_dir, n_jobs=n_jobs)


class StageTimer:
    """Wraps the fingerprint module's batched functions to record seconds and pairs per stage."""

    def __init__(self) -> None:
        self.stages: list[tuple[str, int, float]] = []
        self._orig = {}

    def __enter__(self) -> StageTimer:
        for name in ("lag_correlation_bounds", "lag_correlations"):
            orig = getattr(fingerprint_module, name)
            self._orig[name] = orig

            def timed(*args, _orig=orig, _name=name, **kwargs):
                t = time.perf_counter()
                out = _orig(*args, **kwargs)
                label = f"bound, {kwargs['n_groups']} groups" if "n_groups" in kwargs else "exact"
                self.stages.append((label, int(np.size(args[1])), time.perf_counter() - t))
                return out

            setattr(fingerprint_module, name, timed)
        return self

    def __exit__(self, *exc) -> None:
        for name, orig in self._orig.items():
            setattr(fingerprint_module, name, orig)


def timed(fn, fps, threshold):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(fps, threshold=threshold)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", help="folder of clips (searched recursively)")
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "soundclass-nd-bench"),
                        help="fingerprint cache folder (default: a folder in the temp dir)")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for fingerprinting")
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips (sorted paths)")
    parser.add_argument("--threshold", type=float, default=fingerprint_module.DEFAULT_THRESHOLD,
                        help="similarity at which pairs are flagged (lower it to compare more scores)")
    parser.add_argument("--skip-old", action="store_true", help="time only the new search")
    args = parser.parse_args()

    t = time.perf_counter()
    fps = load_fingerprints(args.dataset, cache_dir=args.cache_dir, n_jobs=args.n_jobs, limit=args.limit)
    lengths = [fp.shape[1] for fp in fps if fp is not None]
    print(f"{args.dataset}: {len(fps)} clips, {len(fps) - len(lengths)} unreadable, "
          f"{min(lengths)}-{max(lengths)} frames (median {int(np.median(lengths))}); "
          f"fingerprints in {time.perf_counter() - t:.1f} s (not timed below)")

    with StageTimer() as stages:
        new, new_wall, new_cpu = timed(fingerprint_module.near_duplicate_pairs, fps, args.threshold)
    staged = sum(s for _, _, s in stages.stages)
    print(f"new: {new_wall:8.2f} s wall {new_cpu:8.2f} s CPU, {len(new)} pairs flagged")
    print(f"  pre-filters and the rest   {new_wall - staged:6.2f} s")
    for label, n_pairs, seconds in stages.stages:
        print(f"  {label:<26} {seconds:6.2f} s  {n_pairs:7d} pairs")
    if args.skip_old:
        return
    old, old_wall, old_cpu = timed(reference_near_duplicate_pairs, fps, args.threshold)
    print(f"old: {old_wall:8.2f} s wall {old_cpu:8.2f} s CPU, {len(old)} pairs flagged")
    same = [p[:2] for p in new] == [p[:2] for p in old]
    diff = max((abs(a[2] - b[2]) for a, b in zip(new, old, strict=False)), default=0.0)
    print(f"ratio old/new: {old_wall / new_wall:.1f}x wall, {old_cpu / new_cpu:.1f}x CPU")
    print(f"identical pairs: {same}; largest score difference {diff:.2g}")


if __name__ == "__main__":
    main()
