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
  pool can break this way); that pool stays broken, see :func:`is_broken`.

The ``fn`` must be picklable (a module-level function or a
:func:`functools.partial` of one) and should itself return a failure value
for a bad item rather than raise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from soundclass.errors import check_positive_int
from soundclass.util.executors import default_n_jobs, make_executor
from soundclass.util.failures import TRANSIENT, describe

__all__ = ["CRASHED", "auto_chunksize", "executor_workers", "is_broken", "run_chunked"]

T = TypeVar("T")
R = TypeVar("R")

#: Reason given to the one item whose processing killed its worker.
CRASHED = "the worker process died while decoding this file (decoder crash or out of memory)"


def _run_chunk(fn: Callable[[Any], Any], chunk: Sequence[Any]) -> list[Any]:
    """The task shipped to a worker: ``fn`` over a few items."""
    return [fn(item) for item in chunk]


def is_broken(executor: Executor) -> bool:
    """Whether ``executor`` is a process pool that a dead worker has broken."""
    try:
        executor.submit(int).result()
    except BrokenProcessPool:
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
    broken: list[int] = []
    pool = make_executor("process", n_jobs=min(workers, len(starts))) if own else executor
    try:
        futures = {}
        for s in starts:
            try:
                futures[pool.submit(_run_chunk, fn, items[s : s + size])] = s
            except BrokenProcessPool:  # a worker died while chunks were still being submitted
                broken.extend(range(s, min(s + size, len(items))))
        for future in as_completed(futures):
            s = futures[future]
            idx = range(s, min(s + size, len(items)))
            try:
                for i, result in zip(idx, future.result(), strict=True):
                    out[i] = result
            except BrokenProcessPool:
                broken.extend(idx)  # retried below, one item per task
                continue
            except Exception as exc:  # noqa: BLE001 - a failed task loses its chunk, not the batch
                reason = f"worker failed: {describe(exc)}"
                for i in idx:
                    out[i] = on_failure(items[i], reason, TRANSIENT)
            tick(len(idx))
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)
    if broken:
        _isolate(fn, items, sorted(broken), out, on_failure, tick)
    return out


def _isolate(fn, items, pending: list[int], out: list, on_failure, tick) -> None:
    """Run ``items[pending]`` one per task in a fresh one-worker pool, recreated after
    each crash, so that only the item that kills a worker gets :data:`CRASHED`."""
    pending = list(pending)
    while pending:
        pool = make_executor("process", n_jobs=1)
        try:
            while pending:
                i = pending.pop(0)
                try:
                    out[i] = pool.submit(_run_chunk, fn, [items[i]]).result()[0]
                except BrokenProcessPool:
                    out[i] = on_failure(items[i], CRASHED, TRANSIENT)
                    tick(1)
                    break  # this pool is dead: continue with a new one
                except Exception as exc:  # noqa: BLE001
                    out[i] = on_failure(items[i], f"worker failed: {describe(exc)}", TRANSIENT)
                tick(1)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
