"""Feature cache: computed once, keyed by content and config, resumable, robust."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest
import soundfile as sf

from soundclass.audio import load
from soundclass.config import FeatureConfig, config_to_dict
from soundclass.errors import ParameterError
from soundclass.extraction import extract
from soundclass.extraction.cache import CHECKSUM_MAGIC, FeatureCache, get_features
from soundclass.extraction.extract import FEATURE_CODE_VERSION
from soundclass.util.executors import make_executor
from soundclass.util.failures import ACCESS, TRANSIENT, Failure
from soundclass.util.hashing import sha256_file as file_sha256

SR = 8000
CFG = FeatureConfig(sr=SR, n_fft=256, hop_length=128, n_mels=32)


@pytest.fixture
def wavs(tmp_path, signal):
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = []
    for i in range(6):
        path = folder / f"clip_{i}.wav"
        sf.write(path, signal(sr=SR, seconds=0.3 + 0.05 * i, seed=i), SR, subtype="PCM_16")
        paths.append(str(path))
    return paths


@pytest.fixture
def calls(monkeypatch):
    """Paths passed to extract.extract_many, one list per call."""
    seen: list[list[str]] = []
    real = extract.extract_many

    def counting(paths, config, **kw):
        paths = [os.fspath(p) for p in paths]
        seen.append(paths)
        return real(paths, config, **kw)

    monkeypatch.setattr(extract, "extract_many", counting)
    return seen


def _npy_files(root):
    return sorted(p for p in root.rglob("*.npy"))


def test_results_equal_direct_computation_and_layout(tmp_path, wavs):
    cache = FeatureCache(tmp_path / "cache")
    feats, failures = cache.get(wavs, CFG, n_jobs=1, progress=False)
    assert failures == []
    for path, f in zip(wavs, feats, strict=True):
        y, _ = load(path, sr=SR)
        np.testing.assert_array_equal(f, extract.compute_feature(y, CFG))
        assert f.dtype == np.float32 and f.shape[0] == CFG.n_mels
        with open(path, "rb") as fh:
            sha = hashlib.sha256(fh.read()).hexdigest()
        assert sha == file_sha256(path)
        entry = FeatureCache(tmp_path / "cache").config_dir(CFG) / sha[:2] / f"{sha}.npy"
        np.testing.assert_array_equal(np.load(entry), f)
    meta = json.loads((FeatureCache(tmp_path / "cache").config_dir(CFG) / "config.json").read_text())
    assert meta == config_to_dict(CFG)
    assert cache.last_stats.computed == 6 and cache.last_stats.hashed == 6


def test_second_call_computes_nothing(tmp_path, wavs, calls):
    root = tmp_path / "cache"
    first, _ = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert sum(len(c) for c in calls) == 6
    mtimes = {p: p.stat().st_mtime_ns for p in _npy_files(root)}
    cache = FeatureCache(root)
    second, failures = cache.get(wavs, CFG, n_jobs=1, progress=False)
    assert failures == []
    assert sum(len(c) for c in calls) == 6  # no new extraction
    assert cache.last_stats.hashed == 0 and cache.last_stats.computed == 0
    assert {p: p.stat().st_mtime_ns for p in _npy_files(root)} == mtimes
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_content_change_is_recomputed(tmp_path, wavs, calls, signal):
    root = tmp_path / "cache"
    before, _ = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    sf.write(wavs[2], signal(sr=SR, seconds=0.4, seed=99), SR, subtype="PCM_16")
    st = os.stat(wavs[2])
    os.utime(wavs[2], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    calls.clear()
    cache = FeatureCache(root)
    after, _ = cache.get(wavs, CFG, n_jobs=1, progress=False)
    assert calls == [[wavs[2]]]
    assert cache.last_stats.hashed == 1
    assert not np.array_equal(before[2], after[2])
    y, _ = load(wavs[2], sr=SR)
    np.testing.assert_array_equal(after[2], extract.compute_feature(y, CFG))


def test_config_change_uses_another_key(tmp_path, wavs, calls):
    root = tmp_path / "cache"
    other = CFG.replace(n_mels=16)
    assert other.key() != CFG.key()
    a, _ = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    b, _ = get_features(wavs, other, cache_dir=root, n_jobs=1, progress=False)
    assert sum(len(c) for c in calls) == 12
    assert a[0].shape[0] == 32 and b[0].shape[0] == 16
    assert sorted(p.name for p in root.iterdir()) == sorted([f"v{FEATURE_CODE_VERSION}-{CFG.key()}", f"v{FEATURE_CODE_VERSION}-{other.key()}"])


def test_identical_content_computed_once(tmp_path, wavs, calls):
    copy = tmp_path / "elsewhere" / "renamed.wav"
    copy.parent.mkdir()
    shutil.copyfile(wavs[0], copy)
    feats, failures = get_features([wavs[0], str(copy), wavs[1]], CFG, cache_dir=tmp_path / "c",
                                   n_jobs=1, progress=False)
    assert failures == []
    assert calls == [[wavs[0], wavs[1]]]
    np.testing.assert_array_equal(feats[0], feats[1])


def test_interrupted_run_resumes(tmp_path, wavs, monkeypatch):
    root = tmp_path / "cache"
    real = extract.extract_many
    done: list[str] = []

    def dies_on_second_chunk(paths, config, **kw):
        if done:
            raise KeyboardInterrupt
        out = real(paths, config, **kw)
        done.extend(paths)
        return out

    monkeypatch.setattr(extract, "extract_many", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        FeatureCache(root).get(wavs, CFG, n_jobs=1, progress=False, chunk_size=2)
    assert len(_npy_files(root)) == 2  # the first chunk was stored as it arrived
    assert not list(root.rglob("*.tmp"))

    # a half-written file of a killed writer: a fresh one is ignored, an old one cleaned
    sha = file_sha256(wavs[4])
    folder = FeatureCache(root).config_dir(CFG) / sha[:2]
    folder.mkdir(exist_ok=True)
    fresh = folder / f".{sha}.npy.4242.deadbeef.tmp"
    stale = folder / f".{sha}.npy.4243.deadbeef.tmp"
    for p in (fresh, stale):
        p.write_bytes(b"\x93NUMPY half")
    old = time.time() - 3600
    os.utime(stale, (old, old))

    calls: list[list[str]] = []

    def counting(paths, config, **kw):
        calls.append(list(paths))
        return real(paths, config, **kw)

    monkeypatch.setattr(extract, "extract_many", counting)
    cache = FeatureCache(root)
    feats, failures = cache.get(wavs, CFG, n_jobs=1, progress=False, chunk_size=2)
    assert failures == []
    assert sorted(p for c in calls for p in c) == sorted(set(wavs) - set(done))
    assert cache.last_stats.cached == 2 and cache.last_stats.computed == 4
    assert not stale.exists() and fresh.exists()
    for path, f in zip(wavs, feats, strict=True):
        np.testing.assert_array_equal(f, extract.extract_file(path, CFG))


def test_damaged_entry_is_recomputed(tmp_path, wavs, calls):
    root = tmp_path / "cache"
    get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    sha = file_sha256(wavs[3])
    (FeatureCache(root).config_dir(CFG) / sha[:2] / f"{sha}.npy").write_bytes(b"not a numpy file")
    calls.clear()
    feats, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [] and calls == [[wavs[3]]]
    np.testing.assert_array_equal(feats[3], extract.extract_file(wavs[3], CFG))


def _entry(root, path):
    sha = file_sha256(path)
    return FeatureCache(root).config_dir(CFG) / sha[:2] / f"{sha}.npy"


def test_entries_carry_a_checksum_and_a_flipped_bit_means_recompute(tmp_path, wavs, calls):
    root = tmp_path / "cache"
    feats, _ = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    entry = _entry(root, wavs[2])
    data = entry.read_bytes()
    assert data[-40:-32] == CHECKSUM_MAGIC
    assert hashlib.sha256(data[:-40]).digest() == data[-32:]
    np.testing.assert_array_equal(np.load(entry), feats[2])  # still a .npy file
    # One flipped bit in the feature values: still a loadable .npy, but wrong.
    damaged = bytearray(data)
    damaged[len(data) - 41] ^= 0x01
    entry.write_bytes(bytes(damaged))
    assert np.load(entry).shape == feats[2].shape  # np.load alone would not notice
    assert FeatureCache(root).load(CFG, file_sha256(wavs[2])) is None
    # An entry without the trailer (an older layout, a torn write) is recomputed too.
    _entry(root, wavs[4]).write_bytes(data[:-40])
    calls.clear()
    again, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [] and calls == [[wavs[2], wavs[4]]]
    np.testing.assert_array_equal(again[2], feats[2])
    np.testing.assert_array_equal(again[4], feats[4])
    assert FeatureCache(root).load(CFG, file_sha256(wavs[2])) is not None


def test_access_failures_are_not_cached_against_the_content(tmp_path, wavs, monkeypatch):
    from soundclass.errors import AudioDecodeError

    real = extract.extract_file
    denied = wavs[1]

    def guarded(path, config):
        if os.fspath(path) == denied:
            try:
                raise PermissionError(13, "Permission denied", path)
            except PermissionError as exc:
                raise AudioDecodeError(path, "cannot be opened as audio (Permission denied)") from exc
        return real(path, config)

    monkeypatch.setattr(extract, "extract_file", guarded)
    root = tmp_path / "cache"
    _, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [Failure(denied, "cannot be opened as audio (Permission denied)")]
    results = extract.extract_many([denied], CFG, n_jobs=1)
    assert results[0].kind == ACCESS and results[0].failure == failures[0]
    assert not list(root.rglob("*.err"))
    copy = tmp_path / "audio" / "same_bytes.wav"
    shutil.copy(denied, copy)
    feats, failures = get_features([str(copy)], CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [] and feats[0] is not None


def test_a_file_name_the_decoder_cannot_use_does_not_poison_its_content(tmp_path, wavs):
    odd = os.path.join(os.fsencode(tmp_path / "audio"), b"bad_\xff\xfe_name.wav")
    shutil.copy(wavs[0], odd)
    odd = os.fsdecode(odd)
    root = tmp_path / "cache"
    get_features([odd], CFG, cache_dir=root, n_jobs=1, progress=False)
    assert not list(root.rglob("*.err"))  # whatever happened, it was not the content
    feats, failures = get_features([wavs[0]], CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [] and feats[0] is not None


def test_a_crashing_worker_fails_only_its_file_and_later_parts_still_run(tmp_path, wavs, monkeypatch):
    from test_extract import _extract_one_crashing  # kills its worker on a file named crash*

    wavs = list(wavs)
    crash = str(tmp_path / "crash.wav")
    shutil.copyfile(wavs[1], crash)
    wavs[1] = crash
    monkeypatch.setattr(extract, "_extract_one", _extract_one_crashing)
    root = tmp_path / "cache"
    cache = FeatureCache(root)
    feats, failures = cache.get(wavs, CFG, n_jobs=2, chunk_size=2, progress=False)
    assert [f is None for f in feats] == [False, True, False, False, False, False]
    assert len(failures) == 1 and failures[0].path == wavs[1]
    assert "worker process died" in failures[0].reason
    assert not list(root.rglob("*.err"))  # a crash is not a verdict on the content


def test_bad_files_reported_and_skipped(tmp_path, wavs, calls):
    empty = tmp_path / "audio" / "empty.wav"
    empty.write_bytes(b"")
    garbage = tmp_path / "audio" / "garbage.wav"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes())
    missing = str(tmp_path / "audio" / "missing.wav")
    paths = [wavs[0], str(empty), wavs[1], missing, str(garbage), wavs[2]]
    root = tmp_path / "cache"
    feats, failures = get_features(paths, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert [p for p, _ in failures] == [str(empty), missing, str(garbage)]
    assert all(reason for _, reason in failures)
    assert "cannot read file" in failures[1][1]
    assert [f is None for f in feats] == [False, True, False, True, True, False]
    errs = list(root.rglob("*.err"))
    assert len(errs) == 2
    assert {json.loads(e.read_text())["path"] for e in errs} == {str(empty), str(garbage)}
    # recorded failures are reported again without recomputing...
    calls.clear()
    _, again = get_features(paths, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert again == failures and calls == []
    # ...unless asked to retry
    _, retried = get_features(paths, CFG, cache_dir=root, n_jobs=1, progress=False, retry_failed=True)
    assert calls == [[str(empty), str(garbage)]] and retried == failures


def test_retry_after_transient_failure(tmp_path, wavs, monkeypatch):
    real = extract.extract_many

    def flaky(paths, config, **kw):
        out = real(paths, config, **kw)
        return [extract.ExtractResult(r.path, None, "disk hiccup") if r.path == wavs[1] else r
                for r in out]

    root = tmp_path / "cache"
    monkeypatch.setattr(extract, "extract_many", flaky)
    _, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [(wavs[1], "disk hiccup")]
    monkeypatch.setattr(extract, "extract_many", real)
    _, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == [(wavs[1], "disk hiccup")]
    feats, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False, retry_failed=True)
    assert failures == [] and feats[1] is not None
    assert not list(root.rglob("*.err"))


def test_worker_failures_are_not_recorded(tmp_path, wavs, monkeypatch):
    def lost(paths, config, **kw):
        return [extract.ExtractResult(p, None, "worker failed: BrokenProcessPool", kind=TRANSIENT)
                for p in paths]

    monkeypatch.setattr(extract, "extract_many", lost)
    root = tmp_path / "cache"
    _, failures = get_features(wavs[:2], CFG, cache_dir=root, n_jobs=1, progress=False)
    assert len(failures) == 2
    assert not list(root.rglob("*.err"))


def test_without_cache_dir(tmp_path, wavs):
    bad = tmp_path / "audio" / "bad.wav"
    bad.write_bytes(b"RIFF")
    feats, failures = get_features([wavs[0], str(bad)], CFG, n_jobs=1, progress=False)
    np.testing.assert_array_equal(feats[0], extract.extract_file(wavs[0], CFG))
    assert feats[1] is None and failures[0][0] == str(bad)
    assert sorted(os.listdir(tmp_path)) == ["audio"]


def test_executors(tmp_path, wavs):
    serial = make_executor("serial")
    a, _ = get_features(wavs, CFG, cache_dir=tmp_path / "a", executor=serial, progress=False)
    b, _ = get_features(wavs[:3], CFG, cache_dir=tmp_path / "b", n_jobs=2, progress=False)
    for x, y in zip(a, b, strict=False):
        np.testing.assert_array_equal(x, y)


def test_bad_arguments(tmp_path, wavs):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ParameterError, match="not a directory"):
        FeatureCache(tmp_path / "file")
    with pytest.raises(ParameterError, match="FeatureConfig"):
        FeatureCache(tmp_path / "c").get(wavs, {"sr": 8000}, progress=False)
    with pytest.raises(ParameterError, match="cannot write"):
        get_features(wavs, CFG, cache_dir=tmp_path / "file" / "sub", progress=False)
    with pytest.raises(ParameterError, match="chunk_size"):
        FeatureCache(tmp_path / "c").get(wavs, CFG, progress=False, chunk_size=0)


_KILLED_RUN = """
import sys, time
from soundclass.extraction import extract
from soundclass.extraction.cache import FeatureCache
from soundclass.config import FeatureConfig

real = extract.extract_many
def slow(paths, config, **kw):
    time.sleep(0.05)
    return real(paths, config, **kw)
extract.extract_many = slow
cfg = FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=32)
FeatureCache(sys.argv[1]).get(sys.argv[2:], cfg, n_jobs=1, progress=False, chunk_size=1)
"""


def test_killed_process_leaves_only_complete_entries(tmp_path, signal):
    import signal as sig
    import subprocess
    import sys

    assert CFG == FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=32)
    paths = []
    for i in range(120):
        p = tmp_path / f"k_{i}.wav"
        sf.write(p, signal(sr=SR, seconds=0.2, seed=100 + i), SR, subtype="PCM_16")
        paths.append(str(p))
    root = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_RUN, str(root), *paths])
    try:
        deadline = time.monotonic() + 60
        while len(_npy_files(root)) < 5 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(sig.SIGKILL)
    finally:
        proc.wait()
    n_done = len(_npy_files(root))
    assert 5 <= n_done < len(paths)
    for p in _npy_files(root):  # every visible entry is complete
        assert np.load(p).shape[0] == CFG.n_mels
    cache = FeatureCache(root)
    feats, failures = cache.get(paths, CFG, n_jobs=1, progress=False)
    assert failures == []
    assert cache.last_stats.cached == n_done and cache.last_stats.computed == len(paths) - n_done
    assert cache.last_stats.hashed == 0  # the index was written before extraction started
    np.testing.assert_array_equal(feats[-1], extract.extract_file(paths[-1], CFG))


def test_fsdd_subset_cached_equals_direct(tmp_path, fsdd_dir):
    from soundclass.data.dataset import discover

    paths = discover(fsdd_dir).paths[::75]  # 40 files, every digit and speaker
    cfg = FeatureConfig(sr=8000, n_fft=256, hop_length=80, n_mels=40, kind="mfcc", n_mfcc=13, deltas=1)
    cache = FeatureCache(tmp_path / "cache")
    feats, failures = cache.get(paths, cfg, n_jobs=1, progress=False)
    assert failures == [] and cache.last_stats.computed == len(paths)
    again, _ = cache.get(paths, cfg, n_jobs=1, progress=False)
    assert cache.last_stats.computed == 0 and cache.last_stats.hashed == 0
    for a, b in zip(feats, again, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.shape[0] == 26
    np.testing.assert_array_equal(feats[7], extract.extract_file(paths[7], cfg))


def test_full_disk_warns_but_returns_features(tmp_path, wavs, monkeypatch):
    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    root = tmp_path / "cache"
    FeatureCache(root)._prepare(CFG)  # config.json can be written, entries cannot
    monkeypatch.setattr(np, "save", no_space)
    with pytest.warns(RuntimeWarning, match="No space left on device"):
        feats, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False)
    assert failures == []
    np.testing.assert_array_equal(feats[0], extract.extract_file(wavs[0], CFG))
    assert _npy_files(root) == [] and not list(root.rglob("*.tmp"))
