"""Frozen backbones in onnxruntime: graphs exported once, cached, checked, re-exported when damaged."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from soundclass.errors import ExportError, ParameterError
from soundclass.models import backbone_runtime as br
from soundclass.models.aisfx import AISFX_BACKBONE, embed_blocks, embed_clip
from soundclass.models.backbone_runtime import (
    FrozenBackbone,
    backbone_cache_dir,
    backbone_graph_path,
    backbone_runner,
)
from soundclass.util.executors import make_executor

BUILDS = []


def _tiny_net() -> nn.Module:
    BUILDS.append(1)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten())
    return net.eval()


def _probe() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, 16)).astype(np.float32)


TINY = FrozenBackbone(name="tiny", build=_tiny_net, weights_digest=lambda: "w1", probe=_probe,
                      input_axes={0: "batch", 2: "t"})
NEVER = FrozenBackbone(name="never", build=_tiny_net, weights_digest=lambda: "w1", probe=_probe,
                       tolerance={"float32": -1.0})  # no graph can pass: the export is refused


@pytest.fixture
def backbone_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCLASS_CACHE", str(tmp_path / "cache"))
    br._runner.cache_clear()
    yield tmp_path / "cache" / "backbones"
    br._runner.cache_clear()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SOUNDCLASS_CACHE", str(tmp_path / "a"))
    assert backbone_cache_dir() == tmp_path / "a" / "backbones"
    monkeypatch.delenv("SOUNDCLASS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert backbone_cache_dir() == tmp_path / "x" / "soundclass" / "backbones"


def test_graph_key_changes_with_the_weights_and_precision(backbone_cache):
    other = FrozenBackbone(name="tiny", build=_tiny_net, weights_digest=lambda: "w2", probe=_probe)
    paths = {backbone_graph_path(TINY), backbone_graph_path(other),
             backbone_graph_path(TINY, precision="int8-dynamic")}
    assert len(paths) == 3 and all(p.parent == backbone_cache for p in paths)
    with pytest.raises(ParameterError, match="precision"):
        backbone_graph_path(TINY, precision="float16")


def test_exported_once_then_loaded_from_the_cache(backbone_cache):
    x = np.random.default_rng(1).standard_normal((5, 3, 40)).astype(np.float32)  # other batch and length
    run = backbone_runner(TINY, threads=1)
    assert run.kind == "onnxruntime"
    with torch.inference_mode():
        want = _tiny_net()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run(x), want, rtol=0, atol=1e-5)
    path = backbone_graph_path(TINY)
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["precision"] == "float32" and record["max_abs_diff"] <= 1e-4
    assert backbone_runner(TINY, threads=1) is run  # once per process
    br._runner.cache_clear()
    BUILDS.clear()
    again = backbone_runner(TINY, threads=1)  # a new process would do this: no torch build, no export
    assert BUILDS == [] and again is not run
    np.testing.assert_allclose(again(x), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("damage", ["truncate", "record"])
def test_a_damaged_graph_is_exported_again(backbone_cache, damage):
    backbone_runner(TINY, threads=1)
    path = backbone_graph_path(TINY)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        path.with_suffix(".json").write_text("{not json")
    br._runner.cache_clear()
    with pytest.warns(RuntimeWarning, match="exporting it again"):
        run = backbone_runner(TINY, threads=1)
    assert run.kind == "onnxruntime"
    assert json.loads(path.with_suffix(".json").read_text())["sha256"]  # rewritten whole


def test_export_failure_falls_back_to_torch_with_a_warning(backbone_cache):
    with pytest.warns(RuntimeWarning, match="differs from torch.*run in torch"):
        run = backbone_runner(NEVER, threads=1)
    assert run.kind == "torch"
    x = _probe()
    with torch.inference_mode():
        np.testing.assert_array_equal(run(x), _tiny_net()(torch.from_numpy(x)).numpy())
    assert not backbone_graph_path(NEVER).exists()
    with pytest.raises(ExportError, match="differs from torch"):
        backbone_runner(NEVER, runtime="onnx", threads=1)


def test_unwritable_cache_keeps_the_graph_in_memory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SOUNDCLASS_CACHE", str(blocker))
    br._runner.cache_clear()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = backbone_runner(TINY, threads=1)
    assert run.kind == "onnxruntime"
    br._runner.cache_clear()


def _worker_threads() -> int:
    return backbone_runner(TINY).session.get_session_options().intra_op_num_threads


def test_one_thread_in_a_pool_worker_every_core_outside(backbone_cache):
    assert _worker_threads() == len(os.sched_getaffinity(0))
    pool = make_executor("process", n_jobs=1)
    try:
        assert pool.submit(_worker_threads).result(timeout=120) == 1
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def test_aisfx_onnxruntime_embeddings_equal_torch(backbone_cache):
    """Float32 onnxruntime embeddings of real-shaped blocks equal torch's within 1e-4 (values up to ~10)."""
    y = (0.3 * np.random.default_rng(0).standard_normal(44100 * 4)).astype(np.float32)
    y[::441] += 0.8  # clicks
    from soundclass.dsp.aisfx import aisfx_blocks

    blocks = aisfx_blocks(y)
    onnx = embed_blocks(blocks, runtime="onnx")
    torch_ = embed_blocks(blocks, runtime="torch")
    assert onnx.shape == torch_.shape == (len(blocks), 512)
    np.testing.assert_allclose(onnx, torch_, rtol=0, atol=1e-4)
    assert np.abs(torch_).max() > 0.1  # not a trivially small output
    np.testing.assert_allclose(embed_clip(y, sr=44100), onnx, rtol=0, atol=1e-4)  # 'auto' is onnxruntime
    # a batch equals stacked singles
    singles = np.concatenate([embed_blocks(b[None], runtime="onnx") for b in blocks])
    np.testing.assert_allclose(singles, onnx, rtol=0, atol=1e-5)
    assert backbone_runner(AISFX_BACKBONE).kind == "onnxruntime"


def test_prepare_exports_the_graph_without_keeping_a_session(backbone_cache):
    path = backbone_graph_path(TINY)
    assert not path.exists()
    assert br.prepare_backbone(TINY) is True
    assert path.is_file() and path.with_suffix(".json").is_file()
    assert br._runner.cache_info().currsize == 0  # nothing held in this process
    assert br.prepare_backbone(NEVER) is False  # the check fails: workers will fall back to torch
    assert not backbone_graph_path(NEVER).exists()


def test_feature_kinds_are_registered_with_their_backbones():
    from soundclass.dsp.aisfx import aisfx_blocks
    from soundclass.models.whisper import WHISPER_BACKBONE, whisper_windows

    (found,) = br.feature_backbones("aisfx")
    assert found.backbone is AISFX_BACKBONE and found.inputs is aisfx_blocks
    (found,) = br.feature_backbones("whisper")
    assert found.backbone is WHISPER_BACKBONE and found.inputs is whisper_windows
    assert [f.backbone for f in br.feature_backbones("fusion")] == [AISFX_BACKBONE, WHISPER_BACKBONE]
    for kind in ("logmel", "aisfx-logmel", "whisper-logmel"):
        assert br.feature_backbones(kind) == ()


def test_registering_a_backbone_again_replaces_it_in_place(monkeypatch):
    monkeypatch.setattr(br, "_FEATURE_BACKBONES", {})
    br.register_feature_backbone("k", TINY, np.atleast_1d)
    br.register_feature_backbone("k", NEVER, np.atleast_1d)
    br.register_feature_backbone("k", TINY, np.atleast_2d)
    found = br.feature_backbones("k")
    assert [f.backbone for f in found] == [TINY, NEVER] and found[0].inputs is np.atleast_2d


# --------------------------------------------------------------------------- Whisper-base's encoder

# onnxruntime against torch, float32: measured up to 2.1e-5 on embeddings up to ~30 in magnitude
# (0.3-45 s of noise), i.e. float rounding; the feature cache key therefore stays as it was.
WHISPER_TOL = {"rtol": 0, "atol": 1e-4}


@pytest.mark.parametrize("seconds", [0.05, 0.3, 1.01, 5.0, 45.0])
def test_whisper_onnxruntime_embeddings_equal_torch(backbone_cache, seconds):
    """Dynamic length: padded to 0.1 s, short, odd frame count, 5 s, two overlapping 22.5 s windows."""
    from soundclass.models.whisper import WHISPER_BACKBONE, whisper_vector, whisper_windows

    rng = np.random.default_rng(int(seconds * 100))
    y = (0.2 * rng.standard_normal(int(16000 * seconds))).astype(np.float32)
    y[::1600] += 0.7  # clicks
    onnx = whisper_vector(y, sr=16000, runtime="onnx")
    torch_ = whisper_vector(y, sr=16000, runtime="torch")
    assert onnx.shape == torch_.shape == (3584,) and onnx.dtype == np.float32
    np.testing.assert_allclose(onnx, torch_, **WHISPER_TOL, err_msg=f"{seconds} s")
    assert np.abs(torch_).max() > 1.0  # not a trivially small output
    assert len(whisper_windows(y, sr=16000)) == (2 if seconds > 30 else 1)
    np.testing.assert_array_equal(whisper_vector(y, sr=16000), onnx)  # 'auto' is onnxruntime
    assert backbone_runner(WHISPER_BACKBONE).kind == "onnxruntime"


def test_whisper_graph_batch_equals_singles_and_the_clip_vectors(backbone_cache):
    from soundclass.models.whisper import (
        WHISPER_BACKBONE,
        clip_vectors,
        pretrained_encoder,
        whisper_logmel,
    )

    rng = np.random.default_rng(3)
    x = np.stack([whisper_logmel((0.3 * rng.standard_normal(32000)).astype(np.float32)) for _ in range(3)])
    run = backbone_runner(WHISPER_BACKBONE, runtime="onnx", threads=1)
    batch = run(x)  # (3, 3584)
    singles = np.concatenate([run(x[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    with torch.inference_mode():
        want = clip_vectors(pretrained_encoder(), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(batch, want, **WHISPER_TOL)
    record = json.loads(backbone_graph_path(WHISPER_BACKBONE).with_suffix(".json").read_text())
    assert record["max_abs_diff"] <= record["tolerance"] == WHISPER_BACKBONE.tolerance["float32"]
