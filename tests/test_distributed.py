"""Distributed data-parallel training under torchrun (2 CPU processes, gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from safetensors.torch import load_file

from soundclass.data import synth
from soundclass.errors import ParameterError
from soundclass.training import distributed as dist

SCRIPT = textwrap.dedent('''
    import hashlib, json, os, sys
    import numpy as np
    import torch
    from torch import nn
    from soundclass.training import distributed as dist
    from soundclass.config import FeatureConfig
    from soundclass.models import ModelSpec, register_model
    from soundclass.training import TrainConfig, fit

    torch.set_num_threads(1)

    class TinyConv(nn.Module):
        def __init__(self, *, n_classes, n_features):
            super().__init__()
            self.conv = nn.Conv1d(n_features, 8, 3, padding=1)
            self.bn = nn.BatchNorm1d(8)
            self.fc = nn.Linear(8, n_classes)

        def forward(self, x):  # (B, n_features, T) -> (B, n_classes)
            return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=-1))

    register_model("ddp-tiny", spec=ModelSpec(
        feature=FeatureConfig(sr=8000, n_fft=256, hop_length=128, n_mels=6),
        input="sequence", standardize=True, clip_seconds=0.3,
        train={"epochs": 3, "batch_size": 4, "lr": 1e-2},
    ))(TinyConv)

    rng = np.random.default_rng(0)
    X, y = [], []
    for c in range(3):
        for _ in range(11):
            x = rng.standard_normal((6, int(rng.integers(5, 40)))) - 30.0
            x[2 * c : 2 * c + 2] += 2.0
            X.append(x.astype(np.float32))
            y.append(c)
    y = np.array(y)
    idx = rng.permutation(len(y))
    va, tr = idx[:9], idx[9:]  # 24 train clips (not a multiple of 2 * 4 * ... per rank), 9 val
    out = sys.argv[1]
    res = fit([X[i] for i in tr], y[tr], [X[i] for i in va], y[va], classes=("a", "b", "c"),
              config=TrainConfig(model="ddp-tiny", seed=1), out_dir=out, progress=False)
    ctx = dist.context()
    h = hashlib.sha256()
    for k, v in sorted(res.model.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().numpy().tobytes())
    report = {"rank": ctx.rank, "world_size": ctx.world_size, "digest": h.hexdigest(),
              "history": len(res.history),
              "val_proba": None if res.val_proba is None else list(res.val_proba.shape)}
    with open(os.path.join(out, f"rank{ctx.rank}.json"), "w") as fh:
        json.dump(report, fh)

    # the same through train(): features via the cache (rank 0 first), grouped split, corrupt files
    from soundclass.data.dataset import discover
    from soundclass.training import train

    demo_out = out + "-train"
    res = train(discover(sys.argv[2]), TrainConfig(model="ddp-tiny", seed=2, epochs=2, n_jobs=1,
                                                  cache_dir=demo_out + "-cache"),
                out_dir=demo_out, progress=False)
    with open(os.path.join(demo_out, f"rank{ctx.rank}.json"), "w") as fh:
        json.dump({"n_val": len(res.val_items), "failures": len(res.failures),
                   "val_proba": None if res.val_proba is None else list(res.val_proba.shape)}, fh)
    dist.cleanup()
''')


def _digest(state):
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def test_single_process_without_world_size(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert not dist.requested()
    ctx = dist.setup()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.active) == (0, 1, True, False)
    assert dist.broadcast_flag(True) is True and dist.all_reduce_sum([1.0, 2.0]) == [1.0, 2.0]
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ParameterError, match="WORLD_SIZE=.two."):
        dist.requested()


@pytest.mark.slow
def test_torchrun_two_processes(tmp_path):
    demo = synth.make_demo_dataset(tmp_path / "demo", n_per_class=4, sr=8000, n_sources=2,
                                   n_corrupt=1, seed=0)
    script = tmp_path / "ddp_smoke.py"
    script.write_text(SCRIPT)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(out), str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = json.loads((out / "rank0.json").read_text())
    r1 = json.loads((out / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2 and {r0["rank"], r1["rank"]} == {0, 1}
    assert r0["digest"] == r1["digest"]  # DDP kept both replicas identical
    assert r0["digest"] == _digest({k[len("model."):]: v for k, v in
                                    load_file(str(out / "last" / "model.safetensors")).items()
                                    if k.startswith("model.")})
    # rank 0 validated on exactly the 9 validation clips (no sampler padding), the others not at all
    assert r0["val_proba"] == [9, 3] and r1["val_proba"] is None
    assert r0["history"] == 3 and r1["history"] == 0
    meta = json.loads((out / "checkpoint" / "model.json").read_text())
    assert meta["metrics"]["n"] == 9
    hist = json.loads((out / "history.json").read_text())
    assert len(hist) == 3 and all(np.isfinite(r["train_loss"]) for r in hist)

    run = tmp_path / "run-train"
    t0 = json.loads((run / "rank0.json").read_text())
    t1 = json.loads((run / "rank1.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert t0["failures"] == t1["failures"] == 1 and len(split["failed"]) == 1
    assert t0["n_val"] == t1["n_val"] == len(split["val"]) > 0
    assert t0["val_proba"] == [len(split["val"]), len(demo.classes)] and t1["val_proba"] is None
    assert json.loads((run / "checkpoint" / "model.json").read_text())["metrics"]["n"] == len(split["val"])


@pytest.mark.slow
def test_cli_train_under_torchrun_reports_once(tmp_path):
    synth.make_demo_dataset(tmp_path / "demo", n_per_class=6, sr=8000, n_sources=3, seed=0)
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "soundclass", "train", str(tmp_path / "demo"), "-o", str(out), "--model", "cnn", "--epochs", "1",
         "--clip-seconds", "1", "--quiet", "--group-pattern", synth.DEMO_GROUP_PATTERN],
        capture_output=True, text=True, timeout=180, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # every rank trained, only rank 0 evaluated and printed
    assert proc.stdout.count("best epoch") == 1 and proc.stdout.count("clips, 4 classes") == 1
    assert (out / "report.html").is_file() and (out / "checkpoint" / "model.json").is_file()
