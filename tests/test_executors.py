"""soundclass.util.executors: every spec gives a working concurrent.futures.Executor."""

from __future__ import annotations

import operator
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np
import pytest
import soundfile as sf

from soundclass.config import FeatureConfig
from soundclass.errors import ParameterError
from soundclass.extraction.extract import extract_many
from soundclass.util import executors
from soundclass.util.executors import DaskExecutor, SerialExecutor, default_n_jobs, make_executor


def _paths(tmp_path, signal, n=5):
    paths = []
    for i in range(n):
        path = tmp_path / f"c{i}.wav"
        sf.write(path, signal(sr=16000, seconds=0.4 + 0.1 * i, seed=i), 16000, subtype="PCM_16")
        paths.append(str(path))
    (tmp_path / "bad.wav").write_bytes(b"not audio at all" * 10)
    paths.insert(2, str(tmp_path / "bad.wav"))
    return paths


def _same(results_a, results_b):
    assert [r.path for r in results_a] == [r.path for r in results_b]
    for a, b in zip(results_a, results_b, strict=True):
        assert a.error == b.error
        if a.ok:
            np.testing.assert_array_equal(a.feature, b.feature)


def test_serial_executor_runs_at_submit_and_keeps_exceptions():
    with make_executor("serial") as ex:
        assert isinstance(ex, SerialExecutor)
        assert ex.submit(operator.add, 2, 3).result() == 5
        failing = ex.submit(operator.truediv, 1, 0)
        assert isinstance(failing.exception(), ZeroDivisionError)
        assert list(ex.map(operator.neg, [1, 2])) == [-1, -2]
    with pytest.raises(RuntimeError, match="shutdown"):
        ex.submit(operator.neg, 1)


def test_process_executor():
    with make_executor("process", n_jobs=2) as ex:
        assert isinstance(ex, ProcessPoolExecutor)
        assert list(ex.map(operator.mul, [1, 2, 3], [4, 5, 6])) == [4, 10, 18]


def test_dask_local_matches_serial(tmp_path, signal):
    paths = _paths(tmp_path, signal)
    config = FeatureConfig(kind="mfcc", n_mfcc=13, deltas=1)
    serial = extract_many(paths, config, executor=make_executor("serial"))
    with make_executor("dask://local", n_jobs=2, processes=False) as ex:
        assert isinstance(ex, DaskExecutor) and isinstance(ex, Executor)
        assert ex.n_workers == 2
        dask_results = extract_many(paths, config, executor=ex, chunksize=2)
        # the same cluster reached by address, as "dask://HOST:PORT" does
        with make_executor(f"dask://{ex.cluster.scheduler_address}") as remote:
            remote_results = extract_many(paths, config, executor=remote)
        assert ex.client.status == "running"  # closing the remote client leaves the cluster
    assert ex.client.status == "closed"
    _same(serial, dask_results)
    _same(serial, remote_results)
    assert [r.ok for r in serial].count(False) == 1


@pytest.mark.parametrize(
    "spec,kwargs,match",
    [
        ("threads", {}, "spec='threads'"),
        ("process", dict(n_jobs=0), "n_jobs=0"),
        ("dask://", {}, "needs an address"),
        (None, {}, "must be a string"),
    ],
)
def test_bad_specs(spec, kwargs, match):
    with pytest.raises(ParameterError, match=match):
        make_executor(spec, **kwargs)


def test_unreachable_scheduler(monkeypatch):
    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 0.5)
    with pytest.raises(ParameterError, match="cannot reach"):
        make_executor("dask://tcp://127.0.0.1:9")


def test_default_n_jobs():
    assert default_n_jobs(3) == 3
    assert default_n_jobs() >= 1
    with pytest.raises(ParameterError):
        default_n_jobs(-1)


def test_process_pool_works_from_unguarded_main_with_torch_loaded(tmp_path):
    """A script with no ``__main__`` guard, piped to ``python -``, torch imported: workers start."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import numpy as np, soundfile as sf, torch  # torch loaded before the pool starts
        from soundclass.config import FeatureConfig
        from soundclass.extraction.extract import extract_many
        paths = []
        for i in range(4):
            p = {str(tmp_path)!r} + f"/{{i}}.wav"
            sf.write(p, np.sin(np.arange(8000) * 0.01 * (i + 1)).astype("float32"), 8000)
            paths.append(p)
        res = extract_many(paths, FeatureConfig(sr=8000, n_fft=256, hop_length=64, n_mels=16), n_jobs=2)
        print("ok", sum(r.feature is not None for r in res))
    """)
    proc = subprocess.run([sys.executable, "-"], input=code, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok 4"


def test_process_pools_never_fork():
    """Workers start from a fork server (or spawn), never from a fork of this process."""
    with make_executor("process", n_jobs=2) as ex:
        assert ex._mp_context.get_start_method() in ("forkserver", "spawn")
        assert ex.submit(operator.add, 2, 3).result(timeout=120) == 5


def test_extract_many_with_aisfx_after_multithreaded_torch_finishes(tmp_path):
    """The hang of issue #16: a parent that has run multi-threaded torch (its OpenMP thread team),
    then aiSFX features on two workers.  With forked workers this blocked forever in libgomp."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import numpy as np, soundfile as sf, torch
        from soundclass.extraction.extract import extract_many
        from soundclass.models import model_spec
        from soundclass.models.aisfx import aisfx_embedding
        torch.set_num_threads(2)
        a = torch.randn(1024, 1024)
        (a @ a).sum().item()  # the OpenMP/BLAS thread team is now running
        rng = np.random.default_rng(0)
        aisfx_embedding(rng.standard_normal(44100).astype("float32"), 44100)  # torch in this process
        paths = []
        for i in range(6):
            p = {str(tmp_path)!r} + f"/{{i}}.wav"
            sf.write(p, 0.1 * rng.standard_normal(44100 * 3).astype("float32"), 44100)
            paths.append(p)
        res = extract_many(paths, model_spec("aisfx-probe").feature, n_jobs=2, progress=False)
        print("ok", sum(r.feature is not None for r in res))
    """)
    script = tmp_path / "unguarded.py"  # a script file with no __main__ guard, as users write them
    script.write_text(code)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "ok 6"
