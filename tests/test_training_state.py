"""The resumable training state: round trips without pickle, clear errors, crash consistency."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from soundclass.checkpoint import state as state_module
from soundclass.checkpoint.state import (
    STATE_META_NAME,
    STATE_WEIGHTS_NAME,
    capture_rng_state,
    has_training_state,
    load_training_state,
    restore_rng_state,
    save_training_state,
)
from soundclass.errors import CheckpointError


def test_training_state_round_trip(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=20)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().mean().backward()
        opt.step()
        sched.step()
    extra = {"history": [{"loss": 1.5, "val": float("nan")}], "stopper": {"best": None, "bad": 2},
             "gen": torch.Generator().manual_seed(3).get_state(), "pair": (1, 2)}
    save_training_state(tmp_path, epoch=4, model=model, optimizer=opt, scheduler=sched, extra=extra)
    state = load_training_state(tmp_path)
    assert state.epoch == 4
    assert state.extra["pair"] == (1, 2) and state.extra["stopper"] == {"best": None, "bad": 2}
    assert np.isnan(state.extra["history"][0]["val"])
    assert torch.equal(state.extra["gen"], extra["gen"])
    assert torch.equal(state.rng_state["torch"], torch.get_rng_state())
    # a fresh optimizer/scheduler loaded from the state continues identically
    model2 = torch.nn.Linear(4, 3)
    model2.load_state_dict(state.model_state)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    sched2 = torch.optim.lr_scheduler.OneCycleLR(opt2, max_lr=1e-2, total_steps=20)
    opt2.load_state_dict(state.optimizer_state)
    sched2.load_state_dict(state.scheduler_state)
    x = torch.randn(8, 4)
    for m, o, s in ((model, opt, sched), (model2, opt2, sched2)):
        o.zero_grad()
        m(x).square().mean().backward()
        o.step()
        s.step()
    assert sched.get_last_lr() == sched2.get_last_lr()
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_state_corrupt(tmp_path):
    save_training_state(tmp_path, epoch=0, model=torch.nn.Linear(2, 2))
    (tmp_path / STATE_WEIGHTS_NAME).write_bytes(b"junk")
    with pytest.raises(CheckpointError, match=STATE_WEIGHTS_NAME):
        load_training_state(tmp_path)
    (tmp_path / STATE_META_NAME).unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_training_state(tmp_path)


def test_rng_state_round_trip():
    state = capture_rng_state()
    a = torch.rand(3)
    restore_rng_state(state)
    assert torch.equal(torch.rand(3), a)


def _save(folder, epoch, *, value):
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    return save_training_state(folder, epoch=epoch, model=model, extra={"history": list(range(epoch + 1))})


def test_json_records_the_tensor_file(tmp_path):
    _save(tmp_path, 0, value=1.0)
    tree = json.loads((tmp_path / STATE_META_NAME).read_text())
    assert tree["tensors"]["name"] == STATE_WEIGHTS_NAME
    assert tree["tensors"]["bytes"] == (tmp_path / STATE_WEIGHTS_NAME).stat().st_size
    assert len(tree["tensors"]["sha256"]) == 64
    assert has_training_state(tmp_path) and not has_training_state(tmp_path / "nowhere")


def test_killed_between_the_two_files_is_refused(tmp_path, monkeypatch):
    """A kill after the new tensors but before the new JSON: the old JSON must not adopt them."""
    _save(tmp_path, 0, value=1.0)
    assert load_training_state(tmp_path).epoch == 0

    def killed(path, obj):
        raise KeyboardInterrupt  # the process dies before the JSON (the commit point) is written

    monkeypatch.setattr(state_module, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, 1, value=2.0)
    monkeypatch.undo()
    # epoch 0's JSON beside epoch 1's weights
    assert json.loads((tmp_path / STATE_META_NAME).read_text())["epoch"] == 0
    with pytest.raises(CheckpointError, match=rf"{STATE_WEIGHTS_NAME}: does not match.*interrupted"):
        load_training_state(tmp_path)
    _save(tmp_path, 1, value=2.0)  # a complete save makes the folder consistent again
    state = load_training_state(tmp_path)
    assert state.epoch == 1 and torch.all(state.model_state["weight"] == 2.0)


def test_same_size_other_tensors_are_refused(tmp_path):
    _save(tmp_path, 0, value=1.0)
    tree = (tmp_path / STATE_META_NAME).read_text()
    _save(tmp_path, 0, value=3.0)  # same layout and size, other bytes
    (tmp_path / STATE_META_NAME).write_text(tree)
    with pytest.raises(CheckpointError, match="sha256 differs"):
        load_training_state(tmp_path)


def test_state_without_record_loads_with_a_warning(tmp_path, caplog):
    _save(tmp_path, 2, value=1.0)
    tree = json.loads((tmp_path / STATE_META_NAME).read_text())
    del tree["tensors"]  # as written before the record existed
    (tmp_path / STATE_META_NAME).write_text(json.dumps(tree))
    with caplog.at_level(logging.WARNING, logger="soundclass.checkpoint.state"):
        state = load_training_state(tmp_path)
    assert state.epoch == 2
    assert "cannot check that the two files belong together" in caplog.text
