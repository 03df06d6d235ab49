"""Bounded, seeded fuzz test of the decoder: byte mutations of small WAV, FLAC, OGG,
MP3, AIFF and M4A files, decoded from memory.

Asserts for every mutated input: no exception other than a SoundclassError, no hang
(a per-case time bound; a hard watchdog aborts the run on a real hang), and output
finite and within the size cap.  ``SOUNDCLASS_FUZZ_N`` sets the number of cases
(default 3000, about 12 s on one core).
"""

from __future__ import annotations

import faulthandler
import os
import struct
import time

import numpy as np
import pytest
from audio_corpus import av_bytes, sf_bytes, tone

from soundclass import audio
from soundclass.errors import SoundclassError

N_CASES = int(os.environ.get("SOUNDCLASS_FUZZ_N", "3000"))
CASE_SECONDS = 5.0  # per-case bound (tiny inputs decode in milliseconds)
MAX_BYTES = 4 * 2**20


def _seeds() -> dict[str, bytes]:
    y = tone(8000, 0.2, channels=2)
    return {
        "wav": sf_bytes(y, 8000, "WAV", "PCM_16"),
        "wav-float": sf_bytes(y, 8000, "WAV", "FLOAT"),
        "flac": sf_bytes(y, 8000, "FLAC"),
        "ogg": sf_bytes(tone(22050, 0.3), 22050, "OGG"),
        "mp3": sf_bytes(tone(22050, 0.3), 22050, "MP3"),
        "aiff": sf_bytes(y, 8000, "AIFF", "PCM_16"),
        "m4a": av_bytes(tone(16000, 0.3), 16000, "ipod", "aac"),
    }


def _mutate(data: bytes, rng: np.random.Generator) -> bytes:
    buf = bytearray(data)
    kind = rng.integers(6)
    if kind == 0:  # flip a few bits
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(len(buf))
            buf[i] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # overwrite a run with random bytes
        i = rng.integers(len(buf))
        n = int(rng.integers(1, 64))
        buf[i : i + n] = rng.bytes(n)
    elif kind == 2:  # truncate
        del buf[rng.integers(1, len(buf)) :]
    elif kind == 3:  # an extreme 32-bit value in the first 64 bytes (sizes, rates, channels)
        i = int(rng.integers(0, min(60, len(buf) - 4)))
        value = int(rng.choice([0, 1, 2, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000, 10**9, 65535]))
        buf[i : i + 4] = struct.pack("<I", value)
    elif kind == 4:  # duplicate or delete a block
        i, n = int(rng.integers(len(buf))), int(rng.integers(1, 512))
        if rng.integers(2):
            buf[i:i] = buf[i : i + n]
        else:
            del buf[i : i + n]
    else:  # an extreme 16-bit value anywhere in the header region
        i = int(rng.integers(0, min(200, len(buf) - 2)))
        buf[i : i + 2] = struct.pack("<H", int(rng.choice([0, 1, 0xFFFF, 0x8000, 0x0055])))
    return bytes(buf)


@pytest.fixture
def watchdog():
    """Abort the whole run with a traceback if a single case hangs (C code cannot be interrupted)."""
    yield lambda: faulthandler.dump_traceback_later(60.0, exit=True)
    faulthandler.cancel_dump_traceback_later()


@pytest.mark.filterwarnings("error::RuntimeWarning")  # e.g. numpy overflow: a failure too
def test_fuzz_decoder(watchdog, capfd):
    seeds = _seeds()
    names = sorted(seeds)
    rng = np.random.default_rng(20261201)
    outcomes = {"decoded": 0, "refused": 0}
    slowest = 0.0
    for case in range(N_CASES):
        name = names[case % len(names)]
        data = _mutate(seeds[name], rng)
        sr = None if case % 2 else 22050
        watchdog()
        t0 = time.perf_counter()
        try:
            y, _ = audio.load(data, sr=sr, mono=bool(case % 3), max_bytes=MAX_BYTES)
        except SoundclassError:
            outcomes["refused"] += 1
        except Exception as exc:  # pragma: no cover - the failure being tested for
            pytest.fail(f"case {case} ({name}): {type(exc).__name__}: {exc}")
        else:
            outcomes["decoded"] += 1
            assert np.isfinite(y).all(), f"case {case} ({name})"
            assert np.abs(y).max() <= audio.MAX_ABS and y.nbytes <= MAX_BYTES, f"case {case} ({name})"
        elapsed = time.perf_counter() - t0
        slowest = max(slowest, elapsed)
        assert elapsed < CASE_SECONDS, f"case {case} ({name}) took {elapsed:.1f} s"
    # nothing leaked on stderr: no exception swallowed in a C callback, no libmpg123 note
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Illegal Audio-MPEG" not in err, err[-2000:]
    # the mutations must exercise both outcomes, or the test proves nothing
    assert outcomes["decoded"] > N_CASES // 10 and outcomes["refused"] > N_CASES // 20, outcomes
