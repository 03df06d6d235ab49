"""The shared mechanisms: atomic writer, hasher, failure record, pool runner, integer checks."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import Future

import numpy as np
import pytest

from soundclass.errors import (
    ParameterError,
    check_fraction,
    check_int,
    check_non_negative_int,
    check_positive_int,
    check_range,
    is_int,
    is_number,
)
from soundclass.util import atomic, pool
from soundclass.util.executors import SerialExecutor
from soundclass.util.failures import ACCESS, CONTENT, TRANSIENT, Failure, describe, failure_kind
from soundclass.util.hashing import file_digest, sha256_file

# ----------------------------------------------------------------------------- atomic


def test_atomic_writers_replace_whole_files(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old", encoding="utf-8")
    atomic.write_json_atomic(target, {"b": 1, "a": [1.5]})
    assert json.loads(target.read_text(encoding="utf-8")) == {"b": 1, "a": [1.5]}
    assert target.read_text(encoding="utf-8").endswith("\n")
    atomic.write_text_atomic(tmp_path / "t.txt", "é\n")
    assert (tmp_path / "t.txt").read_bytes() == "é\n".encode()
    atomic.write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin", "t.txt"]


def test_a_failed_write_keeps_the_old_file_and_no_temp(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError):
        atomic.write_json_atomic(target, {"x": float("nan")})  # allow_nan=False
    with pytest.raises(RuntimeError), atomic.atomic_open(target, "wb") as fh:
        fh.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_text(encoding="utf-8") == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_temp_names_are_recognisable(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic.write_bytes_atomic(tmp_path / "x.npy", b"1")
    assert len(seen) == 1 and atomic.is_temp_name(seen[0]) and seen[0].startswith(".x.npy.")
    assert not atomic.is_temp_name("x.npy")


# ----------------------------------------------------------------------------- hashing


def test_sha256_file_matches_hashlib_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("soundclass.util.hashing.BLOCK_SIZE", 7)
    data = bytes(range(256)) * 3
    path = tmp_path / "f"
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert file_digest(path) == (len(data), hashlib.sha256(data).hexdigest())
    with pytest.raises(OSError):
        sha256_file(tmp_path / "missing")


# ----------------------------------------------------------------------------- failures


def test_failure_is_a_path_reason_pair():
    f = Failure("a.wav", "truncated")
    path, reason = f
    assert (path, reason) == ("a.wav", "truncated") and f == ("a.wav", "truncated")
    assert f.path == "a.wav" and f.reason == "truncated"


def test_failure_kind(tmp_path):
    ok = tmp_path / "ok.wav"
    ok.write_bytes(b"RIFF")
    assert failure_kind(ParameterError("too short"), ok) == CONTENT
    assert failure_kind(MemoryError(), ok) == TRANSIENT
    assert failure_kind(PermissionError(13, "Permission denied"), ok) == ACCESS
    try:
        try:
            "bad_\udcff.wav".encode("utf-8")
        except UnicodeError as inner:
            raise ParameterError("cannot be opened") from inner
    except ParameterError as exc:
        assert failure_kind(exc, ok) == ACCESS
    assert failure_kind(ParameterError("x"), tmp_path / "gone.wav") == ACCESS
    assert failure_kind(ParameterError("x"), os.fsdecode(b"bad_\xff.wav")) == ACCESS
    assert describe(RuntimeError("boom")) == "RuntimeError: boom"
    assert describe(ParameterError("hop_length=0 ...")) == "hop_length=0 ..."


# ----------------------------------------------------------------------------- integer/range checks


@pytest.mark.parametrize("value", [2.5, 2.0, True, "3", 0, -1, None])
def test_check_positive_int_refuses(value):
    with pytest.raises(ParameterError, match=rf"n_fft={value!r} must be a positive integer$"):
        check_positive_int("n_fft", value)


def test_integer_and_range_family():
    assert check_positive_int("n", np.int32(4)) == 4 and type(check_positive_int("n", np.int32(4))) is int
    assert check_positive_int("n", None, allow_none=True) is None
    with pytest.raises(ParameterError, match="must be a positive integer or None"):
        check_positive_int("n", 0, allow_none=True)
    assert check_non_negative_int("seed", 0) == 0
    with pytest.raises(ParameterError, match=r"seed=-1 must be a non-negative integer"):
        check_non_negative_int("seed", -1)
    with pytest.raises(ParameterError, match=r"opset=12 must be an integer in \[13, 20\]"):
        check_int("opset", 12, low=13, high=20)
    assert check_fraction("p", 1) == 1.0
    with pytest.raises(ParameterError, match=r"label_smoothing=1.0 must be in \[0, 1\)"):
        check_fraction("label_smoothing", 1.0, high_open=True)
    for bad in (float("nan"), True, "0.5"):
        with pytest.raises(ParameterError):
            check_range("x", bad, low=0)
    with pytest.raises(ParameterError, match=r"x=0 must be > 0"):
        check_range("x", 0, low=0, low_open=True)


def test_is_int_and_is_number_refuse_bools():
    assert is_int(3) and is_int(np.int64(3)) and is_int(np.uint8(0))
    assert not any(is_int(v) for v in (True, np.True_, 3.0, "3", None))
    assert is_int(3, allow_numpy=False) and not is_int(np.int64(3), allow_numpy=False)
    assert all(is_number(v) for v in (3, 2.5, np.float32(1), np.int8(1), float("nan")))
    assert not any(is_number(v) for v in (False, np.bool_(True), "1", None, 1j))


def test_allow_numpy_false_refuses_numpy_integers_with_the_same_message():
    assert type(check_positive_int("tta", 2, allow_numpy=False)) is int
    with pytest.raises(ParameterError, match=re.escape(f"tta={np.int64(2)!r} must be a positive integer")):
        check_positive_int("tta", np.int64(2), allow_numpy=False)
    with pytest.raises(ParameterError, match="must be a non-negative integer or None"):
        check_non_negative_int("k", np.int32(1), allow_none=True, allow_numpy=False)
    assert check_non_negative_int("k", None, allow_none=True, allow_numpy=False) is None


# ----------------------------------------------------------------------------- pool runner


def _square(x: int) -> int:
    return x * x


def _die_on(x: int, *, killer: int) -> int:
    if x == killer:
        os._exit(3)  # what a segfaulting decoder does to its worker
    return x * x


def _fail(item, reason, kind):
    return (item, reason, kind)


def test_run_chunked_keeps_order_serial_and_pooled():
    items = list(range(23))
    want = [x * x for x in items]
    ticks = []
    assert pool.run_chunked(_square, items, on_failure=_fail, n_jobs=1, progress=ticks.append) == want
    assert sum(ticks) == 23
    assert pool.run_chunked(_square, items, on_failure=_fail, n_jobs=2, chunksize=4) == want
    with SerialExecutor() as ex:
        assert pool.run_chunked(_square, items, on_failure=_fail, executor=ex, chunksize=5) == want
    assert pool.run_chunked(_square, [], on_failure=_fail) == []
    with pytest.raises(ParameterError, match="chunksize=0"):
        pool.run_chunked(_square, items, on_failure=_fail, chunksize=0)


def test_a_real_worker_crash_only_fails_its_own_item():
    items = list(range(12))
    out = pool.run_chunked(functools.partial(_die_on, killer=5), items, on_failure=_fail,
                           n_jobs=2, chunksize=4)
    assert out[5] == (5, pool.CRASHED, TRANSIENT)
    assert [o for i, o in enumerate(out) if i != 5] == [x * x for x in items if x != 5]


def test_a_raising_task_fails_its_chunk_and_a_callers_broken_pool_is_reported():
    class Raising(SerialExecutor):
        def submit(self, fn, /, *args, **kwargs):
            if 3 in args[1]:
                future = Future()
                future.set_exception(RuntimeError("lost"))
                return future
            return super().submit(fn, *args, **kwargs)

    out = pool.run_chunked(_square, list(range(8)), on_failure=_fail, executor=Raising(), chunksize=2)
    assert out[2] == (2, "worker failed: RuntimeError: lost", TRANSIENT) and out[3][0] == 3
    assert out[:2] == [0, 1] and out[4:] == [16, 25, 36, 49]

    from concurrent.futures.process import BrokenProcessPool

    class Broken(SerialExecutor):
        def submit(self, fn, /, *args, **kwargs):
            future = Future()
            future.set_exception(BrokenProcessPool("dead"))
            return future

    class BreaksAtSubmit(SerialExecutor):
        def submit(self, fn, /, *args, **kwargs):
            raise BrokenProcessPool("broken before the batch started")

    out = pool.run_chunked(_square, [1, 2, 3], on_failure=_fail, executor=BreaksAtSubmit())
    assert out == [1, 4, 9]
    # A caller's pool that broke: its items are still run, isolated in local pools.
    broken = Broken()
    out = pool.run_chunked(_square, [1, 2, 3], on_failure=_fail, executor=broken)
    assert out == [1, 4, 9] and pool.is_broken(broken)
    with SerialExecutor() as ex:
        assert not pool.is_broken(ex)


# ----------------------------------------------------------------------------- orphans


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_pool_workers_die_with_a_killed_parent():
    code = textwrap.dedent("""
        import os, sys, time
        from soundclass.util.executors import make_executor
        ex = make_executor("process", n_jobs=2)
        futures = [ex.submit(os.getpid) for _ in range(8)]
        pids = sorted({f.result() for f in futures})
        ex.submit(time.sleep, 60); ex.submit(time.sleep, 60)  # workers now blocked
        print(" ".join(map(str, pids)), flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        pids = [int(p) for p in parent.stdout.readline().split()]
        assert pids and all(not _gone(p) for p in pids)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not all(_gone(p) for p in pids):
            time.sleep(0.05)
        assert all(_gone(p) for p in pids), "pool workers outlived their killed parent"
    finally:
        parent.kill()
        parent.wait(timeout=10)



# ----------------------------------------------------------------------------- stalls


def _block_on(x: int, *, stuck: int) -> int:
    if x == stuck:
        time.sleep(3600)  # a decoder that never returns
    return x * x


def test_a_stalled_worker_fails_only_its_item_and_the_batch_goes_on():
    items = list(range(10))
    t0 = time.monotonic()
    out = pool.run_chunked(functools.partial(_block_on, stuck=3), items, on_failure=_fail,
                           n_jobs=2, chunksize=2, stall_after=3.0)
    took = time.monotonic() - t0
    item, reason, kind = out[3]
    assert item == 3 and kind == TRANSIENT
    assert reason == pool.stalled_reason(3.0) and reason.startswith("worker stalled after 3 s")
    assert [o for i, o in enumerate(out) if i != 3] == [x * x for x in items if x != 3]
    assert took < 60, f"the stall was not cut short ({took:.0f} s)"


def test_the_deadline_grows_with_the_slowest_task():
    deadline = pool._Deadline(2.0)
    assert deadline.seconds(4) == 2.0  # nothing measured yet: the floor
    deadline.record(1.0, 4)  # 0.25 s per item
    assert deadline.seconds(4) == pool.STALL_FACTOR * 1.0
    deadline.record(0.1, 4)  # a faster task does not shrink it
    assert deadline.seconds(1) == pool.STALL_FACTOR * 0.25


# ----------------------------------------------------------------------------- installed files


def test_installed_file_finds_a_packaged_file_and_names_what_is_missing():
    from soundclass.errors import CheckpointError
    from soundclass.util.packages import installed_file

    path = installed_file("numpy", "numpy/__init__.py", what="numpy", install="pip install numpy")
    assert path.is_file() and path.name == "__init__.py"
    with pytest.raises(CheckpointError, match=r"the weights need the 'no-such-pkg-x' package: run `pip x`"):
        installed_file("no-such-pkg-x", "a.bin", what="the weights", install="pip x")
    with pytest.raises(CheckpointError, match=r"nope\.bin: missing from the installed numpy .*run `pip y`"):
        installed_file("numpy", "numpy/nope.bin", what="numpy", install="pip y")
