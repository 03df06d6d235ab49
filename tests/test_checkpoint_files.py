"""The shared file layer of checkpoints and training states: atomic writes, reads naming the file."""

from __future__ import annotations

import math

import pytest
import torch

from soundclass.checkpoint.files import (
    read_json,
    read_tensors,
    saveable_tensor,
    write_json,
    write_tensors,
)
from soundclass.errors import CheckpointError


def test_tensors_round_trip_with_shared_storage(tmp_path):
    base = torch.arange(6, dtype=torch.float32, requires_grad=True)
    view = base[1:4]  # shares base's storage: safetensors refuses it unless cloned
    tensors = {"a": saveable_tensor(base), "b": saveable_tensor(view)}
    assert not tensors["a"].requires_grad and tensors["b"].is_contiguous()
    assert tensors["b"].untyped_storage().data_ptr() != tensors["a"].untyped_storage().data_ptr()
    write_tensors(tmp_path / "t.safetensors", tensors, metadata={"format": "pt"})
    back = read_tensors(tmp_path / "t.safetensors")
    assert torch.equal(back["a"], base.detach()) and torch.equal(back["b"], view.detach())
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temporary file left


def test_json_round_trip_keeps_non_finite_numbers(tmp_path):
    write_json(tmp_path / "m.json", {"loss": float("nan"), "best": float("inf"), "n": [1, 2]})
    back = read_json(tmp_path / "m.json")
    assert math.isnan(back["loss"]) and back["best"] == math.inf and back["n"] == [1, 2]
    assert (tmp_path / "m.json").read_text().startswith('{\n  "loss"')  # indented


@pytest.mark.parametrize(("text", "match"), [
    (None, "m.json: missing"),
    ("{not json", "m.json: not valid JSON"),
    (b"\xff\xfe", "m.json: not valid JSON"),
    ("[1, 2]", "m.json: expected a JSON object, got list"),
])
def test_read_json_refusals_name_the_file(tmp_path, text, match):
    path = tmp_path / "m.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(CheckpointError, match=match):
        read_json(path)


def test_read_tensors_refusals_name_the_file(tmp_path):
    path = tmp_path / "t.safetensors"
    with pytest.raises(CheckpointError, match="t.safetensors: missing"):
        read_tensors(path)
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    with pytest.raises(CheckpointError, match="t.safetensors: corrupt safetensors file"):
        read_tensors(path)
