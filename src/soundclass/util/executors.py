"""Where batch work runs: ``concurrent.futures`` executors from a short spec.

``make_executor(spec)`` understands

- ``"process"``: a :class:`~concurrent.futures.ProcessPoolExecutor` on this machine;
- ``"serial"``: :class:`SerialExecutor`, everything in the calling process (debugging, tests);
- ``"dask://local"``: a local ``dask.distributed`` cluster of ``n_jobs`` worker processes;
- ``"dask://HOST:PORT"``: a running dask scheduler (any ``distributed.Client`` address,
  e.g. ``"dask://tcp://10.0.0.5:8786"``).

Every result is a :class:`concurrent.futures.Executor`; use it as a context
manager (or call ``shutdown()``) to release workers and, for dask, the client.

The workers of a ``"process"`` pool die with their parent: on Linux each sets
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` when it starts, so a ``kill -9`` of the
parent leaves no orphan blocked on a dead pipe.  (Linux delivers the signal
when the *thread* that started the worker ends; pools are started and used by
the thread that calls the batch API, so this is the caller's lifetime.)
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "DaskExecutor", "SerialExecutor", "default_n_jobs", "die_with_parent", "make_executor",
    "process_pool",
]

#: Seconds to wait for a remote dask scheduler.
CONNECT_TIMEOUT = 10.0


def default_n_jobs(n_jobs: int | None = None) -> int:
    """``n_jobs``, or the number of CPUs this process may use when ``None``.

    Raises
    ------
    ParameterError
        ``n_jobs`` is not a positive integer.
    """
    if n_jobs is None:
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - macOS/Windows
            return max(1, os.cpu_count() or 1)
    return check_positive_int("n_jobs", n_jobs, allow_none=True)


class SerialExecutor(Executor):
    """An :class:`~concurrent.futures.Executor` that runs each call at ``submit`` time.

    Exceptions are stored in the returned future, as with a real pool.
    """

    def __init__(self) -> None:
        self._shutdown = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)
        else:
            future.set_result(result)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shutdown = True


class DaskExecutor(Executor):
    """A dask ``Client``'s executor that also closes the client (and a cluster it owns).

    Parameters
    ----------
    client : distributed.Client
    cluster : distributed.LocalCluster or None
        Closed on :meth:`shutdown` when given.
    """

    def __init__(self, client, cluster=None) -> None:
        self.client = client
        self.cluster = cluster
        self._executor = client.get_executor(pure=False)
        self._closed = False

    @property
    def n_workers(self) -> int:
        """Worker threads the scheduler knows of (at least 1)."""
        workers = self.client.scheduler_info().get("workers", {})
        return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def submit(self, fn, /, *args, **kwargs) -> Future:
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=wait and not cancel_futures)
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _process_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the platform has it, else ``spawn``.

    Workers only decode audio and run numpy/scipy/soxr, never torch, so forking
    a parent that has loaded torch is safe (torch's own DataLoader forks too).
    ``forkserver``/``spawn`` would re-import the caller's ``__main__`` in every
    worker: a script without an ``if __name__ == "__main__":`` guard would run
    again, and code piped to ``python -`` cannot start workers at all.
    """
    if "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Make this process receive SIGKILL when its parent dies (Linux only).

    Parameters
    ----------
    parent_pid : int or None
        The pid the parent had when it started this process; if the parent is
        already gone (this process was re-parented meanwhile), exit at once.

    Returns
    -------
    bool
        Whether the death signal is set (``False`` off Linux or without libc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        return False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent died before the signal was armed
    return ok


def _worker_init(parent_pid: int) -> None:
    """Initializer of every ``"process"`` pool worker."""
    die_with_parent(parent_pid)


def process_pool(n_jobs: int | None = None) -> ProcessPoolExecutor:
    """A local process pool whose workers die with this process (see the module doc)."""
    return ProcessPoolExecutor(
        max_workers=default_n_jobs(n_jobs), mp_context=_process_context(),
        initializer=_worker_init, initargs=(os.getpid(),),
    )


def _dask_client(address: str, *, n_jobs: int | None, processes: bool) -> DaskExecutor:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ParameterError(
            "dask executors need dask[distributed]: pip install 'soundclass[deploy]'"
        ) from exc
    if address == "local":
        cluster = LocalCluster(
            n_workers=default_n_jobs(n_jobs),
            threads_per_worker=1,
            processes=processes,
            dashboard_address=None,
        )
        return DaskExecutor(Client(cluster), cluster)
    if not address:
        raise ParameterError("dask:// needs an address, e.g. dask://local or dask://HOST:8786")
    try:
        client = Client(address, timeout=f"{CONNECT_TIMEOUT}s")
    except OSError as exc:
        raise ParameterError(f"cannot reach the dask scheduler at {address!r} ({exc})") from None
    return DaskExecutor(client)


def make_executor(spec: str = "process", *, n_jobs: int | None = None, processes: bool = True) -> Executor:
    """An executor for batch work, from a short spec.

    Parameters
    ----------
    spec : str
        ``"process"``, ``"serial"``, ``"dask://local"`` or ``"dask://HOST:PORT"``.
    n_jobs : int or None
        Worker processes for ``"process"`` and ``"dask://local"`` (``None``: all CPUs).
    processes : bool
        ``"dask://local"`` only: ``False`` runs the dask workers as threads of
        this process (quick to start, for tests).

    Returns
    -------
    concurrent.futures.Executor

    Raises
    ------
    ParameterError
        Unknown spec, bad ``n_jobs``, unreachable scheduler.
    """
    if not isinstance(spec, str):
        raise ParameterError(f"executor spec={spec!r} must be a string")
    if spec == "serial":
        return SerialExecutor()
    if spec == "process":
        return process_pool(n_jobs)
    if spec.startswith("dask://"):
        return _dask_client(spec[len("dask://"):], n_jobs=n_jobs, processes=processes)
    raise ParameterError(
        f"executor spec={spec!r} must be 'process', 'serial', 'dask://local' or 'dask://HOST:PORT'"
    )
