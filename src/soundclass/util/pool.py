"""The one chunked pool runner, with crashed-worker isolation.

:func:`run_chunked` applies a per-item function to many items on an
executor (a local process pool by default), a chunk of items per task to
amortise the task overhead, and returns one result per item in input order.
One bad item never stops the batch:

- a task that raises turns every item of its chunk into
  ``on_failure(item, "worker failed: <reason>", kind)``;
- a worker that *dies* (a decoder crash, the kernel's OOM killer) breaks a
  process pool and every chunk still in it; those items are retried one per
  task in a fresh local one-worker pool, so only the item that kills a worker
  fails, with :data:`CRASHED`.  This holds for a caller's
  :class:`~concurrent.futures.ProcessPoolExecutor` too (only a local process
  pool can break this way); that pool stays broken, see :func:`is_broken`;
- nothing waits forever: when no task finishes within a deadline derived
  from the work (:data:`STALL_FACTOR` times the slowest task so far, at
  least ``stall_after`` seconds), the pool's workers are killed and the
  unfinished tasks' items retried one per task in fresh workers, each under
  its own deadline; an item that still stalls fails with
  :func:`stalled_reason` and the batch goes on.

The ``fn`` must be picklable (a module-level function or a
:func:`functools.partial` of one) and should itself return a failure value
for a bad item rather than raise.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, wait
from concurrent.futures import TimeoutError as FutureTimeout  # not the builtin on 3.10
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from soundclass.errors import check_positive_int
from soundclass.util.executors import default_n_jobs, kill_workers, make_executor
from soundclass.util.failures import TRANSIENT, describe

__all__ = [
    "CRASHED", "STALL_FACTOR", "STALL_FLOOR", "auto_chunksize", "executor_workers", "is_broken",
    "run_chunked", "stalled_reason",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: Reason given to the one item whose processing killed its worker.
CRASHED = "the worker process died while decoding this file (decoder crash or out of memory)"

#: Seconds every wait on workers may last at least (start-up, model loading, one long file).
STALL_FLOOR = 300.0
#: A wait may last this many times the slowest task finished so far.
STALL_FACTOR = 20.0


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> tuple[float, list[Any]]:
    """The task shipped to a worker: ``fn`` over a few items, and the seconds it took."""
    t0 = time.perf_counter()
    results = [fn(item) for item in chunk]
    return time.perf_counter() - t0, results


class _Deadline:
    """How long a wait on workers may last: :data:`STALL_FACTOR` times the slowest task
    finished so far (per item), at least ``floor`` seconds."""

    def __init__(self, floor: float) -> None:
        self.floor = float(floor)
        self.per_item = 0.0

    def record(self, seconds: float, n_items: int) -> None:
        self.per_item = max(self.per_item, seconds / max(1, n_items))

    def seconds(self, n_items: int) -> float:
        return max(self.floor, STALL_FACTOR * self.per_item * max(1, n_items))


def stalled_reason(seconds: float) -> str:
    """The failure reason of an item whose worker did not answer within ``seconds``."""
    return f"worker stalled after {seconds:.0f} s (killed; the run went on without this item)"


def is_broken(executor: Executor) -> bool:
    """Whether ``executor`` is a process pool that a dead worker has broken."""
    try:
        executor.submit(int).result(timeout=STALL_FLOOR)
    except (BrokenProcessPool, FutureTimeout):
        return True
    except RuntimeError:  # shut down
        return False
    return False


def executor_workers(executor: Executor, n_jobs: int | None = None) -> int:
    """How many tasks ``executor`` runs at once (its pool size, dask's threads, else ``n_jobs``)."""
    for attr in ("_max_workers", "n_workers"):
        value = getattr(executor, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return default_n_jobs(n_jobs)


def auto_chunksize(n_items: int, n_workers: int, *, max_chunksize: int = 32) -> int:
    """About 8 chunks per worker (load balance), at most ``max_chunksize`` items (latency)."""
    return max(1, min(max_chunksize, math.ceil(n_items / (8 * n_workers))))


def run_chunked(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    on_failure: Callable[[T, str, str], R],
    executor: Executor | None = None,
    n_jobs: int | None = None,
    chunksize: int | None = None,
    max_chunksize: int = 32,
    progress: Callable[[int], Any] | None = None,
    stall_after: float = STALL_FLOOR,
) -> list[R]:
    """``[fn(item) for item in items]`` on a pool, in input order, never losing an item.

    Parameters
    ----------
    fn : callable
        ``fn(item) -> result``; picklable.
    items : sequence [shape=(n,)]
    on_failure : callable
        ``on_failure(item, reason, kind) -> result`` for an item whose task
        failed or whose worker died (``kind`` is ``"transient"``).
    executor : concurrent.futures.Executor or None
        Where to run; not shut down here.  ``None``: a process pool of
        ``n_jobs`` workers created and shut down here (with ``n_jobs=1``,
        everything runs in this process, without crash isolation).
    n_jobs : int or None
        Workers of the own pool (``None``: all CPUs); with an ``executor``,
        only a hint for the chunk size.
    chunksize : int or None
        Items per task (``None``: :func:`auto_chunksize`).
    max_chunksize : int
        Upper bound of the automatic chunk size.
    progress : callable or None
        Called with the number of items finished, as they finish.
    stall_after : float
        The floor of every wait, in seconds: when no task finishes within
        ``max(stall_after, STALL_FACTOR * slowest task so far)``, the workers
        are killed and the unfinished tasks' items retried one per task, each
        with its own such deadline; an item that still stalls gets
        :func:`stalled_reason`.  The first task of a pool includes the worker's
        start-up (imports, model loading), hence a generous floor.

    Returns
    -------
    list [shape=(n,)]
        ``results[i]`` belongs to ``items[i]``.
    """
    items = list(items)
    if chunksize is not None:
        chunksize = check_positive_int("chunksize", chunksize)
    tick = progress or (lambda n: None)
    if not items:
        return []
    if executor is None and default_n_jobs(n_jobs) == 1:
        results = []
        for item in items:
            results.append(fn(item))
            tick(1)
        return results
    own = executor is None
    workers = default_n_jobs(n_jobs) if own else executor_workers(executor, n_jobs)
    size = chunksize or auto_chunksize(len(items), workers, max_chunksize=max_chunksize)
    starts = list(range(0, len(items), size))
    out: list[Any] = [None] * len(items)
    retry: list[int] = []  # items of tasks lost to a dead or stalled worker: retried one by one
    deadline = _Deadline(stall_after)
    pool = make_executor("process", n_jobs=min(workers, len(starts))) if own else executor
    try:
        futures = {}
        for s in starts:
            try:
                futures[pool.submit(_run_chunk, fn, items[s : s + size])] = s
            except BrokenProcessPool:  # a worker died while chunks were still being submitted
                retry.extend(range(s, min(s + size, len(items))))
        pending = set(futures)
        while pending:
            wait_for = deadline.seconds(size)
            done, pending = wait(pending, timeout=wait_for, return_when=FIRST_COMPLETED)
            if not done:  # no task finished in time: every worker may be stuck
                logger.warning("no pool task finished in %.0f s: killing the workers, retrying "
                               "their %d unfinished task(s) one item at a time", wait_for, len(pending))
                for future in pending:
                    future.cancel()
                    retry.extend(range(futures[future], min(futures[future] + size, len(items))))
                kill_workers(pool)
                break
            for future in done:
                s = futures[future]
                idx = range(s, min(s + size, len(items)))
                try:
                    seconds, results = future.result()
                except BrokenProcessPool:
                    retry.extend(idx)  # retried below, one item per task
                    continue
                except Exception as exc:  # noqa: BLE001 - a failed task loses its chunk, not the batch
                    reason = f"worker failed: {describe(exc)}"
                    for i in idx:
                        out[i] = on_failure(items[i], reason, TRANSIENT)
                else:
                    deadline.record(seconds, len(idx))
                    for i, result in zip(idx, results, strict=True):
                        out[i] = result
                tick(len(idx))
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    if retry:
        _isolate(fn, items, sorted(retry), out, on_failure, tick, deadline)
    return out


def _isolate(fn, items, pending: list[int], out: list, on_failure, tick, deadline: _Deadline) -> None:
    """Run ``items[pending]`` one per task in a fresh one-worker pool, recreated after
    each crash or stall, so that only the item that kills or blocks a worker fails
    (with :data:`CRASHED` or :func:`stalled_reason`)."""
    pending = list(pending)
    while pending:
        pool = make_executor("process", n_jobs=1)
        try:
            while pending:
                i = pending.pop(0)
                limit = deadline.seconds(1)
                try:
                    seconds, results = pool.submit(_run_chunk, fn, [items[i]]).result(timeout=limit)
                except BrokenProcessPool:
                    out[i] = on_failure(items[i], CRASHED, TRANSIENT)
                    tick(1)
                    break  # this pool is dead: continue with a new one
                except FutureTimeout:
                    out[i] = on_failure(items[i], stalled_reason(limit), TRANSIENT)
                    kill_workers(pool)
                    tick(1)
                    break
                except Exception as exc:  # noqa: BLE001
                    out[i] = on_failure(items[i], f"worker failed: {describe(exc)}", TRANSIENT)
                else:
                    deadline.record(seconds, 1)
                    out[i] = results[0]
                tick(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
