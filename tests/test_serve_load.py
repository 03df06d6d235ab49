"""A bounded load test of ``soundclass serve`` on loopback: no resets, 503 + Retry-After, bounded RSS.

The real server runs in a subprocess (so its RSS is its own) on 127.0.0.1 at an
ephemeral port; 200 clients connect at once.  Everything is bounded: the
number of requests, every socket operation (``TIMEOUT``) and the run itself.
"""

from __future__ import annotations

import http.client
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import make_signal
from test_serve_common import TIMEOUT, save_tiny_checkpoint, wav_bytes

N_CLIENTS = 200
N_LARGE = 20  # of them, near the upload cap
N_VANISHING = 10  # extra clients that hang up mid-upload
WORKERS, QUEUE, CAP_MB = 2, 8, 1
LOAD_BUDGET = 40.0  # seconds for the burst (about 5 s on a quiet 2-core machine)


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _post(port: int, body: bytes, results: list, barrier: threading.Barrier) -> None:
    try:
        barrier.wait(TIMEOUT)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        try:
            conn.request("POST", "/api/predict", body=body, headers={"Content-Type": "audio/wav"})
            resp = conn.getresponse()
            resp.read()
            results.append((resp.status, resp.getheader("Retry-After")))
        finally:
            conn.close()
    except Exception as exc:  # resets, timeouts: all counted as failures
        results.append((type(exc).__name__, str(exc)))


def _vanish(port: int, barrier: threading.Barrier) -> None:
    barrier.wait(TIMEOUT)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                     "Content-Length: 500000\r\n\r\n".encode() + b"\0" * 1000)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RSS is read from /proc")
def test_200_concurrent_requests_no_resets_bounded_rss(tmp_path):
    ckpt = save_tiny_checkpoint(tmp_path / "ckpt", "seed-cnn")
    proc = subprocess.Popen(
        [sys.executable, "-m", "soundclass", "serve", str(ckpt), "--host", "127.0.0.1", "--port", "0",
         "--quiet", "--workers", str(WORKERS), "--queue", str(QUEUE), "--max-upload-mb", str(CAP_MB),
         "--max-seconds", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        port = int(match.group(1))
        small = wav_bytes(make_signal(sr=8000, seconds=0.5), 8000)
        rng = np.random.default_rng(0)
        n_large = (CAP_MB * 2**20 - 1000) // 2  # 16-bit samples just under the cap
        large = wav_bytes((0.1 * rng.standard_normal(n_large)).astype(np.float32), 8000)
        assert len(large) < CAP_MB * 2**20

        warm: list = []
        for _ in range(3):  # model, matplotlib and the pool threads loaded before the baseline
            _post(port, small, warm, threading.Barrier(1))
        assert [r[0] for r in warm] == [200] * 3, warm
        baseline = _rss_kb(proc.pid)

        peak = [baseline]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.01):
                peak[0] = max(peak[0], _rss_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: list = []
        barrier = threading.Barrier(N_CLIENTS + N_VANISHING)
        bodies = [large] * N_LARGE + [small] * (N_CLIENTS - N_LARGE)
        threads = [threading.Thread(target=_post, args=(port, b, results, barrier), daemon=True) for b in bodies]
        threads += [threading.Thread(target=_vanish, args=(port, barrier), daemon=True) for _ in range(N_VANISHING)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:  # bounded: every socket operation times out after TIMEOUT anyway
            t.join(max(0.1, LOAD_BUDGET - (time.monotonic() - t0)))
        elapsed = time.monotonic() - t0
        stop.set()
        sampler.join(TIMEOUT)
        hwm = _rss_kb(proc.pid, "VmHWM")

        assert len(results) == N_CLIENTS, "some clients did not finish in time"
        failures = [r for r in results if r[0] not in (200, 503)]
        assert failures == [], failures[:5]
        busy = [r for r in results if r[0] == 503]
        assert all(r[1] == "1" for r in busy), busy[:5]  # every 503 says when to retry
        ok = len(results) - len(busy)
        assert ok >= WORKERS  # admitted uploads were served (hang-ups may have held some slots)
        growth_mb = (peak[0] - baseline) / 1024
        bound_mb = 3 * (WORKERS + QUEUE) * CAP_MB + 100  # bodies, decoded copies, interpreter slack
        print(f"\nload: {N_CLIENTS} concurrent POSTs ({N_LARGE} of ~{CAP_MB} MB) + {N_VANISHING} hang-ups "
              f"in {elapsed:.1f} s: {ok} x 200, {len(busy)} x 503 (Retry-After), 0 resets; "
              f"server RSS {baseline / 1024:.0f} MB -> peak {peak[0] / 1024:.0f} MB "
              f"(+{growth_mb:.0f} MB, bound {bound_mb} MB; VmHWM {hwm / 1024:.0f} MB)")
        assert growth_mb < bound_mb
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    # --quiet: no per-request lines, and client disconnects leave no tracebacks
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err[-2000:]
