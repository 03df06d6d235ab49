"""A run folder written before the checkpoint stage (``tests/data/old_run``) still loads, predicts and resumes.

The files were written by ``tests/data/make_old_run.py`` with the code of
commit 120e1a8 (``soundclass.inference.checkpoint`` and
``soundclass.training.state``); the probabilities below are what that code
predicted for them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from soundclass.checkpoint.format import as_checkpoint, load_checkpoint, resolve_checkpoint
from soundclass.checkpoint.state import has_training_state, load_training_state, restore_rng_state
from soundclass.inference.calibration import apply_checkpoint_calibration, unknown_threshold
from soundclass.inference.predictor import predict_proba
from soundclass.models import create_model

OLD_RUN = Path(__file__).resolve().parent / "data" / "old_run"
# predict_proba of the old code on _features(), then with the stored temperature 1.5
OLD_PROBA = np.array([[0.5175924, 0.48240766], [0.51872134, 0.48127866], [0.5179522, 0.48204783]])
OLD_CALIBRATED = np.array([[0.5117309, 0.48826906], [0.51248413, 0.48751587], [0.511971, 0.488029]])


def _features():
    rng = np.random.default_rng(3)
    return [rng.normal(-30, 8, (64, n)).astype(np.float32) for n in (25, 40, 90)]


def test_old_run_folder_loads_and_predicts_as_before():
    assert resolve_checkpoint(OLD_RUN) == OLD_RUN / "checkpoint"
    ckpt = as_checkpoint(OLD_RUN)
    assert ckpt.model_name == "cnn" and tuple(ckpt.classes) == ("hum", "hiss") and ckpt.clip_frames == 40
    proba = predict_proba(ckpt, _features())
    np.testing.assert_allclose(proba, OLD_PROBA, atol=1e-6, rtol=0)
    np.testing.assert_allclose(apply_checkpoint_calibration(ckpt, proba), OLD_CALIBRATED, atol=1e-6, rtol=0)
    assert unknown_threshold(ckpt) == 0.6 and unknown_threshold(ckpt, precision=0.9) == 0.6


def test_old_training_state_resumes():
    last = OLD_RUN / "last"
    assert has_training_state(last)
    state = load_training_state(last)
    assert state.epoch == 0 and state.extra["history"] == [{"epoch": 0, "loss": 0.7}]
    assert state.extra["best"] == (0, 0.5)
    ckpt = load_checkpoint(last)
    model = create_model("cnn", n_classes=2, n_features=64, channels=[4, 4, 8, 8])
    model.load_state_dict(state.model_state)
    for name, tensor in ckpt.model.state_dict().items():  # the state and the checkpoint agree
        assert torch.equal(model.state_dict()[name], tensor), name
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    opt.load_state_dict(state.optimizer_state)
    assert all(s["step"].item() == 1 for s in opt.state.values())  # the one step taken before
    restore_rng_state(state.rng_state)
    x = torch.randn(2, 64, 40)
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    opt.step()  # and the run goes on from there
    assert all(s["step"].item() == 2 for s in opt.state.values())
