"""Where batch work runs: ``concurrent.futures`` executors from a short spec.

``make_executor(spec)`` understands

- ``"process"``: a :class:`~concurrent.futures.ProcessPoolExecutor` on this machine;
- ``"serial"``: :class:`SerialExecutor`, everything in the calling process (debugging, tests);
- ``"dask://local"``: a local ``dask.distributed`` cluster of ``n_jobs`` worker processes;
- ``"dask://HOST:PORT"``: a running dask scheduler (any ``distributed.Client`` address,
  e.g. ``"dask://tcp://10.0.0.5:8786"``).

Every result is a :class:`concurrent.futures.Executor`; use it as a context
manager (or call ``shutdown()``) to release workers and, for dask, the client.

Local ``"process"`` pools never ``fork`` the calling process: it may have
run torch, onnxruntime or a threaded BLAS, and a forked child that uses such
a runtime again deadlocks.  Their workers fork from a fork server (a fresh
interpreter that has only imported modules, :func:`preload_in_workers`), run
single-threaded (:func:`single_threaded`), and die with the caller: on Linux
each waits on a pidfd of the caller and exits when it ends (and sets
``prctl(PR_SET_PDEATHSIG, SIGKILL)`` towards the fork server), so a
``kill -9`` of the caller leaves no orphan blocked on a dead pipe; the fork
server then exits too.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.context
import os
import select
import signal
import sys
import threading
import time
import types
from concurrent.futures import Executor, Future, ProcessPoolExecutor

from threadpoolctl import threadpool_limits

from soundclass.errors import ParameterError, check_positive_int

__all__ = [
    "DaskExecutor", "SerialExecutor", "default_n_jobs", "die_with_parent", "exit_with", "kill_workers",
    "make_executor", "preload_in_workers", "process_pool", "single_threaded",
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


#: Modules every pool worker has imported before it starts (see :func:`preload_in_workers`).
_WORKER_MODULES: list[str] = []


def preload_in_workers(*modules: str) -> None:
    """Have the fork server import ``modules`` once, so that pool workers start with them.

    A module whose functions run in pool workers calls this at import time
    with its own ``__name__``; the fork server, started with the first local
    pool of the process, imports every module named so far (and the main
    module), and each worker forks from it with them loaded: a worker costs
    milliseconds instead of seconds of imports (torch alone takes 2-4 s here).
    A module named after the server started is imported by each worker when
    it first needs it.
    """
    for name in modules:
        if name not in _WORKER_MODULES:
            _WORKER_MODULES.append(name)


@contextlib.contextmanager
def _main_hidden():
    """Show process start-up a bare ``__main__``, so workers do not re-run the caller's script."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")  # no __file__ or __spec__: left alone
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class _WorkerProcess(multiprocessing.context.ForkServerProcess):
    """A fork-server process that does not import the caller's main module.

    ``spawn`` and ``forkserver`` children normally re-run the main script
    (as ``__mp_main__``), which breaks every script without an
    ``if __name__ == "__main__":`` guard.  Pool workers only run functions of
    importable modules, so they skip it.
    """

    @staticmethod
    def _Popen(process_obj):
        with _main_hidden():
            return multiprocessing.context.ForkServerProcess._Popen(process_obj)


class _WorkerContext(multiprocessing.context.ForkServerContext):
    Process = _WorkerProcess


def _process_context() -> multiprocessing.context.BaseContext:
    """A fork server where the platform has one, else ``spawn``; never ``fork``.

    A process that has run torch (its OpenMP thread team), onnxruntime or a
    threaded BLAS cannot be forked safely: a forked child that uses the
    runtime again blocks forever inside libgomp.  Workers therefore fork from
    a fork server, a fresh interpreter that imports the modules named with
    :func:`preload_in_workers` but runs no numerical work.  They do not import
    the caller's main module, so a script without an
    ``if __name__ == "__main__":`` guard, code given with ``-c`` and code piped
    to ``python -`` all start workers; the functions run in them must live in
    importable modules (not in the main script).
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = _WorkerContext()
        context.set_forkserver_preload(list(_WORKER_MODULES))
        return context
    return multiprocessing.get_context("spawn")  # pragma: no cover - Windows


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, owned by someone else
        return True
    return True


def single_threaded() -> None:
    """Limit this process's native thread pools to one thread (torch, OpenMP, BLAS).

    Pool workers run one per core; a worker with a multi-threaded runtime
    would oversubscribe the cores.  onnxruntime sessions are given their
    thread count where they are made.
    """
    os.environ["OMP_NUM_THREADS"] = "1"  # for runtimes loaded after this point
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
    threadpool_limits(1)


def exit_with(pid: int) -> None:
    """End this process (``os._exit``) as soon as process ``pid`` ends, however it ends.

    A daemon thread waits on a pidfd of ``pid`` (Linux 5.3+; elsewhere it polls
    once a second).  Exits at once if ``pid`` is already gone.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # pragma: no cover - old kernel or not Linux
        fd = None

    def watch() -> None:
        if fd is not None:
            select.select([fd], [], [])  # readable when the process has ended
        else:  # pragma: no cover
            while _alive(pid):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name=f"soundclass-exit-with-{pid}", daemon=True).start()


def _worker_init(main_pid: int) -> None:
    """Initializer of every ``"process"`` pool worker.

    The worker's parent is the fork server (with ``spawn``, the caller): the
    death signal ties it to that parent, and :func:`exit_with` to the caller
    itself (the fork server outlives a killed caller while any worker it
    started is alive, so the death signal alone would not do).
    """
    die_with_parent()  # towards the fork server; exit_with covers the caller itself
    exit_with(main_pid)
    single_threaded()


def process_pool(n_jobs: int | None = None) -> ProcessPoolExecutor:
    """A local process pool of fresh (never forked-from-here) single-threaded workers that
    die with this process (see the module doc)."""
    return ProcessPoolExecutor(
        max_workers=default_n_jobs(n_jobs), mp_context=_process_context(),
        initializer=_worker_init, initargs=(os.getpid(),),
    )


def kill_workers(executor: Executor) -> None:
    """Kill the worker processes of a local process pool (a stalled pool); others are left alone.

    The pool is broken afterwards (:class:`~concurrent.futures.process.BrokenProcessPool`
    for anything still in it) and should be shut down.
    """
    if not isinstance(executor, ProcessPoolExecutor):
        return
    for process in list((getattr(executor, "_processes", None) or {}).values()):
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):  # already gone or closed
            pass


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
