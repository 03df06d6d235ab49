"""Cold onnxruntime prediction scored inside the extraction workers equals the two-phase path."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import make_signal
from soundclass.checkpoint.format import load_checkpoint, save_checkpoint
from soundclass.inference import worker_scoring
from soundclass.inference.backends import make_backend
from soundclass.inference.predict import predict_paths
from soundclass.models import create_model, model_spec
from soundclass.util.executors import make_executor

CLASSES = ("a", "b", "c")
N_CLIPS = 2 * worker_scoring.PATHS_PER_TASK + 7  # three tasks, the last one partial


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    spec = model_spec("cnn")
    torch.manual_seed(0)
    kwargs = {"channels": (8, 8, 16, 16)}
    model = create_model("cnn", n_classes=len(CLASSES), n_features=spec.feature.n_features, **kwargs)
    folder = save_checkpoint(tmp_path_factory.mktemp("ws") / "cnn", model, model_name="cnn", model_kwargs=kwargs,
                             feature=spec.feature, classes=CLASSES, train_config={"bucket": False},
                             clip_frames=60)
    return load_checkpoint(folder)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ws-clips")
    paths = []
    for k in range(N_CLIPS):
        path = folder / f"clip_{k:03d}.wav"
        seconds = (0.2, 0.5, 1.4)[k % 3]  # shorter than the window (padded), about one, several windows
        sf.write(path, make_signal(16000, seconds, seed=k), 16000, subtype="PCM_16")
        paths.append(str(path))
    broken = folder / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEnot really")
    paths.insert(40, str(broken))  # inside the second task
    return paths


def _two_phase(backend, paths, **kw):
    with make_executor("process", n_jobs=2) as ex:  # a given executor: the two-phase path
        return predict_paths(backend, paths, n_jobs=2, progress=False, executor=ex, **kw)


@pytest.mark.parametrize("tta", [1, 2])
def test_workers_give_the_two_phase_probabilities(cnn, clips, tta, monkeypatch):
    backend = make_backend(cnn, "onnx", cache=False)
    calls = []

    def spy(*args, **kwargs):
        calls.append(len(args[1]))
        return score_paths(*args, **kwargs)

    score_paths = worker_scoring.score_paths
    monkeypatch.setattr(worker_scoring, "score_paths", spy)
    got = predict_paths(backend, clips, n_jobs=2, progress=False, tta=tta, batch_size=4)
    assert calls == [len(clips)]  # predict_paths took the worker path
    monkeypatch.undo()
    want = _two_phase(backend, clips, tta=tta, batch_size=4)
    assert list(got.failures) == list(want.failures) == [clips[40]]
    assert got.failures[clips[40]] == want.failures[clips[40]]
    np.testing.assert_allclose(got.proba, want.proba, rtol=0, atol=1e-6)
    ok = np.delete(got.proba, 40, axis=0)
    assert np.isnan(got.proba[40]).all() and np.isfinite(ok).all()
    np.testing.assert_allclose(ok.sum(axis=1), 1.0, atol=1e-5)


def test_usable_only_for_cold_onnx_with_several_workers(cnn, tmp_path):
    onnx, torch_ = make_backend(cnn, "onnx", cache=False), make_backend(cnn, "torch")
    n = worker_scoring.PATHS_PER_TASK + 1
    assert worker_scoring.usable(onnx, n_paths=n, n_workers=2, cache_dir=None, executor=None)
    assert not worker_scoring.usable(torch_, n_paths=n, n_workers=2, cache_dir=None, executor=None)
    assert not worker_scoring.usable(onnx, n_paths=n, n_workers=2, cache_dir=tmp_path, executor=None)
    assert not worker_scoring.usable(onnx, n_paths=n, n_workers=2, cache_dir=None, executor=object())
    assert not worker_scoring.usable(onnx, n_paths=n, n_workers=1, cache_dir=None, executor=None)
    assert not worker_scoring.usable(onnx, n_paths=n - 1, n_workers=2, cache_dir=None, executor=None)


def test_a_large_graph_is_not_kept_and_scores_in_two_phases(cnn, clips, monkeypatch):
    from soundclass.inference import backends

    monkeypatch.setattr(backends, "KEPT_GRAPH_BYTES", 100)  # the test graph is larger
    backend = make_backend(cnn, "onnx", cache=False)
    assert backend.logits.graph is None
    assert not worker_scoring.usable(backend, n_paths=len(clips), n_workers=2, cache_dir=None, executor=None)
    got = predict_paths(backend, clips, n_jobs=2, progress=False, batch_size=4)
    assert list(got.failures) == [clips[40]] and np.isfinite(np.delete(got.proba, 40, axis=0)).all()


_REAL_SCORE_TASK = worker_scoring.score_task


def _score_task_failing_on_clip_033(paths, *, spec):
    """``score_task`` that raises in its worker for the task holding clip_033 (pool workers
    import it from this module: they are not forks of the test process)."""
    if any(p.endswith("clip_033.wav") for p in paths):
        raise RuntimeError("simulated crash of a worker task")
    return _REAL_SCORE_TASK(paths, spec=spec)


def test_a_failed_task_is_scored_the_two_phase_way(cnn, clips, monkeypatch):
    backend = make_backend(cnn, "onnx", cache=False)
    # the second task (clip_033) raises inside a worker
    monkeypatch.setattr(worker_scoring, "score_task", _score_task_failing_on_clip_033)
    found = worker_scoring.score_paths(backend, clips, tta=1, batch_size=4, n_jobs=2, progress=False)
    task = worker_scoring.PATHS_PER_TASK
    assert found.lost == list(range(task, 2 * task))  # the second task, whole
    assert sorted(found.scored) == [i for i in range(len(clips)) if not task <= i < 2 * task]
    got = predict_paths(backend, clips, n_jobs=2, progress=False, batch_size=4)
    monkeypatch.undo()
    want = _two_phase(backend, clips, batch_size=4)
    assert list(got.failures) == [clips[40]]  # the broken file sits in the retried task
    np.testing.assert_allclose(got.proba, want.proba, rtol=0, atol=1e-6)
