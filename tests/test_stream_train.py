"""Training streams its features from the cache (issue #9, item 4): memory bounded by the batch.

``get_features(..., lazy=True)`` checks every entry and keeps none
(:class:`soundclass.extraction.stored.StoredFeatures`); with a cache dir,
training reads the clips batch by batch and gives the same model as in memory.
Loads are counted by wrapping :func:`soundclass.extraction.stored.read_entry`
(the one place a stored clip is read); an array is "live" until it is
garbage, so the peak of live arrays is what training held at once.
"""

from __future__ import annotations

import weakref

import numpy as np
import pytest
import soundfile as sf
import torch

from soundclass.checkpoint.format import load_checkpoint
from soundclass.config import FeatureConfig
from soundclass.errors import CacheEntryError, SoundclassError
from soundclass.extraction import cache as cache_module
from soundclass.extraction import extract, stored
from soundclass.extraction.cache import FeatureCache, get_features
from soundclass.extraction.entry import entry_bytes
from soundclass.extraction.stored import StoredFeatures, feature_shapes, take
from soundclass.inference.predictor import predict_logits
from soundclass.training import TrainConfig, fit, norm_stats, train
from soundclass.training import fitting as fitting_module
from soundclass.training.data import ClipDataset
from soundclass.training.trainer import prepare_data

SR = 8000
CFG = FeatureConfig(sr=SR, n_fft=256, hop_length=128, n_mels=16)
TINY_CNN = {"model": "cnn", "model_kwargs": {"channels": [4, 4, 8, 8]}, "epochs": 2, "batch_size": 4,
            "clip_seconds": 0.5}


@pytest.fixture
def wavs(tmp_path, signal):
    folder = tmp_path / "audio"
    folder.mkdir()
    paths = []
    for i in range(5):
        path = folder / f"clip_{i}.wav"
        sf.write(path, signal(sr=SR, seconds=0.3 + 0.1 * i, seed=i), SR, subtype="PCM_16")
        paths.append(str(path))
    (folder / "empty.wav").write_bytes(b"")
    paths.insert(2, str(folder / "empty.wav"))  # a failed file in the middle
    return paths


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    from soundclass.data import synth

    return synth.make_demo_dataset(tmp_path_factory.mktemp("demo"), n_per_class=6, sr=SR,
                                   n_sources=3, n_corrupt=1, seed=0)


class Loads:
    """Counts reads of stored clips and how many of the arrays read are alive at once."""

    def __init__(self):
        self.count = self.live = self.peak = self.base = 0

    def reset(self):
        """Count from now on; arrays alive now (held by the test) are not counted in ``at_once``."""
        self.count, self.base, self.peak = 0, self.live, self.live

    @property
    def at_once(self) -> int:
        """Most arrays read since :meth:`reset` alive at the same time."""
        return self.peak - self.base

    def _dead(self):
        self.live -= 1

    def wrap(self, real):
        def read_entry(path):
            arr = real(path)
            self.count += 1
            self.live += 1
            self.peak = max(self.peak, self.live)
            weakref.finalize(arr, self._dead)
            return arr

        return read_entry


@pytest.fixture
def loads(monkeypatch):
    counter = Loads()
    monkeypatch.setattr(stored, "read_entry", counter.wrap(stored.read_entry))
    return counter


# ------------------------------------------------------------------ the store

def test_lazy_get_equals_eager_and_holds_nothing(tmp_path, wavs, monkeypatch):
    root = tmp_path / "cache"
    eager, eager_failures = get_features(wavs, CFG, n_jobs=1, progress=False)  # no cache: in memory
    held = Loads()  # every array the cache pass reads, to check that none is kept
    monkeypatch.setattr(cache_module, "read_entry", held.wrap(cache_module.read_entry))
    for run in ("computed now", "from the cache"):
        lazy, failures = get_features(wavs, CFG, cache_dir=root, n_jobs=1, progress=False, lazy=True)
        assert isinstance(lazy, StoredFeatures) and len(lazy) == len(wavs), run
        assert failures == eager_failures and held.live == 0, run
        assert lazy[2] is None and lazy.shapes[2] is None and lazy.paths[2] is None
        assert lazy.shapes == [None if f is None else f.shape for f in eager]
        for a, b in zip(lazy, eager, strict=True):
            assert (a is None) == (b is None) and (a is None or np.array_equal(a, b)), run
    assert held.count == len(wavs) - 1  # the second pass verified every entry, and kept none
    np.testing.assert_array_equal(lazy.n_frames, [0 if f is None else f.shape[1] for f in eager])
    # without a cache dir there is nothing to stream from: lists, as before
    assert isinstance(get_features(wavs, CFG, n_jobs=1, progress=False, lazy=True)[0], list)


def test_unwritable_entries_are_held_in_memory(tmp_path, wavs, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(FeatureCache, "store", read_only)
    with pytest.warns(RuntimeWarning, match="Read-only"):
        lazy, _ = get_features(wavs, CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False, lazy=True)
    assert lazy.paths == [None] * len(wavs)
    np.testing.assert_array_equal(lazy[0], extract.extract_file(wavs[0], CFG))


def test_take_and_shapes_on_lists_and_stores(tmp_path, wavs, loads):
    lazy, _ = get_features(wavs, CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False, lazy=True)
    eager = [lazy[i] for i in range(len(lazy))]
    loads.reset()
    picked = take(lazy, np.array([4, 0, 3]))
    assert isinstance(picked, StoredFeatures) and loads.count == 0  # nothing read
    assert picked.shapes == [eager[4].shape, eager[0].shape, eager[3].shape]
    assert feature_shapes(picked) == picked.shapes == feature_shapes([eager[4], eager[0], eager[3]])
    np.testing.assert_array_equal(picked[1], eager[0])
    np.testing.assert_array_equal(take(picked, [2])[0], eager[3])  # a subset of a subset
    np.testing.assert_array_equal(lazy[-1], eager[-1])
    assert isinstance(lazy[1:3], StoredFeatures) and lazy[1:3].shapes == lazy.shapes[1:3]
    listed = take(eager, [4, 0])
    assert isinstance(listed, list) and listed[0] is eager[4] and listed[1] is eager[0]
    assert take(eager, []) == [] and len(take(lazy, [])) == 0
    with pytest.raises(IndexError):
        take(lazy, [len(lazy)])
    with pytest.raises(TypeError):
        lazy[1.5]


def test_norm_stats_and_predictions_read_each_stored_clip_once(tmp_path, wavs, loads):
    lazy, _ = get_features(wavs, CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False, lazy=True)
    ok = [i for i, s in enumerate(lazy.shapes) if s is not None]
    clips = take(lazy, ok)
    eager = list(clips)
    loads.reset()
    mean, std = norm_stats(clips)
    assert loads.count == len(ok) and loads.at_once <= 2  # the next clip is read before the last is dropped
    ref_mean, ref_std = norm_stats(eager)
    np.testing.assert_array_equal(mean, ref_mean)
    np.testing.assert_array_equal(std, ref_std)
    allf = np.concatenate(eager, axis=1).astype(np.float64)  # the two-pass reference
    np.testing.assert_allclose(mean, allf.mean(axis=1), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, allf.std(axis=1), rtol=1e-5)

    def run(batch):  # (B, n_features, L) -> (B, 3)
        return np.stack([batch[:, :3].mean(axis=2), batch[:, 3:6].max(axis=2)], axis=2).sum(axis=2)

    loads.reset()
    got = predict_logits(run, clips, input_kind="sequence", clip_frames=7, tta=2, batch_size=3,
                         norm_mean=mean, norm_std=std)
    assert loads.count == len(ok) and loads.at_once == 1  # every clip once, one at a time
    ref = predict_logits(run, eager, input_kind="sequence", clip_frames=7, tta=2, batch_size=3,
                         norm_mean=mean, norm_std=std)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("pad_to_batch", [False, True])
def test_stored_clip_dataset_gives_the_in_memory_batches(tmp_path, wavs, loads, pad_to_batch):
    lazy, _ = get_features(wavs, CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False, lazy=True)
    clips = take(lazy, [i for i, s in enumerate(lazy.shapes) if s is not None])  # 19 to 50 frames
    mean, std = norm_stats(clips)
    kw = {"clip_frames": 30, "seed": 3, "pad_to_batch": pad_to_batch, "norm_mean": mean, "norm_std": std}
    targets = [0, 1, 0, 1, 0]
    streamed, memory = ClipDataset(clips, targets, **kw), ClipDataset(list(clips), targets, **kw)
    assert streamed.clips is None and memory.clips is not None
    np.testing.assert_array_equal(streamed.lengths, memory.lengths)
    for epoch in (0, 2):
        streamed.set_epoch(epoch)
        memory.set_epoch(epoch)
        for idx in ([0, 1, 2], [4, 3], [2]):  # short clips padded with their standardized minimum
            loads.reset()
            x, y = streamed.__getitems__(idx)
            assert loads.count == len(idx) and loads.at_once == 1
            x_ref, y_ref = memory.__getitems__(idx)
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref)
        assert torch.equal(streamed[1][0], memory[1][0])


def test_an_entry_changed_after_the_check_is_a_named_error(tmp_path, wavs):
    lazy, _ = get_features(wavs, CFG, cache_dir=tmp_path / "c", n_jobs=1, progress=False, lazy=True)
    path = lazy.paths[0]
    good = path.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(CacheEntryError, match="fails its checksum") as err:
        lazy[0]
    assert err.value.path == str(path) and str(path) in str(err.value)
    path.write_bytes(entry_bytes(np.zeros((CFG.n_features, 3), np.float32)))  # valid, but another one
    with pytest.raises(CacheEntryError, match="replaced"):
        lazy[0]
    path.unlink()
    with pytest.raises(CacheEntryError, match="missing"):
        lazy[0]
    path.write_bytes(good)
    assert lazy[0].shape == lazy.shapes[0]


# ------------------------------------------------------------------ training

def _cfg(tmp_path, cache, **kw):
    return TrainConfig(n_jobs=1, val_size=6, cache_dir=str(tmp_path / "cache") if cache else None, **kw)


@pytest.mark.parametrize("kind", ["cnn", "logmel-logreg"])
def test_training_reads_the_cache_batch_by_batch(tmp_path, demo, loads, monkeypatch, kind):
    config = _cfg(tmp_path, True, **(TINY_CNN if kind == "cnn" else {"model": kind}))
    data = prepare_data(demo, config, progress=False)
    assert isinstance(data.features, StoredFeatures) and loads.live == 0
    loaders = []
    real_make_loaders = fitting_module.make_loaders
    monkeypatch.setattr(fitting_module, "make_loaders", lambda *a, **kw: loaders.append(
        real_make_loaders(*a, **kw)) or loaders[-1])
    loads.reset()
    tr, va = data.train_idx, data.val_idx
    if kind == "cnn":
        res = fit(take(data.features, tr), data.targets[tr], take(data.features, va), data.targets[va],
                  classes=data.classes, config=config, out_dir=tmp_path / "run", progress=False)
        assert loaders and loaders[0].dataset.clips is None  # the dataset holds no clip
        assert res.val_proba.shape == (len(va), len(data.classes))
    else:
        from soundclass.training.classical_run import fit_classical_run

        fit_classical_run(take(data.features, tr), data.targets[tr], take(data.features, va), data.targets[va],
                          classes=data.classes, config=config, out_dir=tmp_path / "run")
    assert loads.count >= len(tr) + len(va)
    assert 1 <= loads.at_once <= 4 < len(tr)  # at most a batch (4) at once, never the training set


@pytest.mark.parametrize("kind", ["cnn", "logmel-logreg"])
def test_streamed_training_equals_training_in_memory(tmp_path, demo, kind):
    extra = TINY_CNN if kind == "cnn" else {"model": kind}
    runs = {}
    for cache in (False, True):
        config = _cfg(tmp_path / str(cache), cache, **extra)
        runs[cache] = train(demo, config, out_dir=tmp_path / str(cache) / "run", progress=False)
    memory, streamed = runs[False], runs[True]
    assert [it.path for it in streamed.val_items] == [it.path for it in memory.val_items]
    np.testing.assert_allclose(streamed.val_proba, memory.val_proba, rtol=0, atol=1e-6)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in memory.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in streamed.history]
    a = load_checkpoint(memory.checkpoint_dir).model.state_dict()
    b = load_checkpoint(streamed.checkpoint_dir).model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_cache_entry_removed_during_training_names_the_file(tmp_path, demo):
    config = _cfg(tmp_path, True, **TINY_CNN)
    data = prepare_data(demo, config, progress=False)
    gone = data.features.paths[int(data.train_idx[0])]
    gone.unlink()
    tr, va = data.train_idx, data.val_idx
    with pytest.raises(SoundclassError, match="missing") as err:
        fit(take(data.features, tr), data.targets[tr], take(data.features, va), data.targets[va],
            classes=data.classes, config=config, out_dir=tmp_path / "run", progress=False)
    assert isinstance(err.value, CacheEntryError) and str(gone) in str(err.value)
