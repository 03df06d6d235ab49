"""The resumable training state, stored without pickle and written as one crash-consistent unit.

``last/`` of a run holds, besides the model checkpoint, the state that lets
``--resume`` continue exactly where the run stopped: the model, optimizer
and scheduler state dicts, the epoch, the RNG state and the caller's
extras (history, early stopping, config).  Every tensor goes to
``training_state.safetensors`` and the rest, including tuples and
integer-keyed dicts, to ``training_state.json``.

Crash consistency: the tensors are written first, then the JSON, which
records the SHA-256 and size of the tensor file it belongs to
(``tensors``).  Both writes are atomic renames, and the JSON is the commit
point: a run killed between the two leaves the previous epoch's JSON beside
the new tensors, and :func:`load_training_state` refuses that pair with a
:class:`~soundclass.errors.CheckpointError` instead of resuming the old epoch
on top of the new weights.  A state written before this record existed
loads with a logged warning.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soundclass.checkpoint.files import (
    read_json,
    read_tensors,
    saveable_tensor,
    write_json,
    write_tensors,
)
from soundclass.checkpoint.format import unwrap_model
from soundclass.errors import CheckpointError, ParameterError
from soundclass.util.hashing import sha256_file

__all__ = [
    "STATE_FORMAT_VERSION",
    "STATE_META_NAME",
    "STATE_WEIGHTS_NAME",
    "TrainingState",
    "capture_rng_state",
    "has_training_state",
    "load_training_state",
    "restore_rng_state",
    "save_training_state",
]

logger = logging.getLogger(__name__)

STATE_FORMAT_VERSION = 1
STATE_WEIGHTS_NAME = "training_state.safetensors"
STATE_META_NAME = "training_state.json"
_FORMAT = "soundclass-training-state"


@dataclass(frozen=True)
class TrainingState:
    """The resumable part of a training run (see :func:`save_training_state`).

    ``model_state``, ``optimizer_state`` and ``scheduler_state`` are the
    ``state_dict()`` of each; ``rng_state`` holds ``torch`` and ``numpy`` RNG
    states; ``extra`` anything else JSON-able the caller stored (history,
    early stopping, ...).
    """

    epoch: int
    model_state: dict
    optimizer_state: dict | None
    scheduler_state: dict | None
    rng_state: dict
    extra: dict


# Nested state dicts are split into tensors (to safetensors) and a JSON tree in
# which a tensor is {"__tensor__": key}, a tuple {"__tuple__": [...]}, a dict
# with non-string keys {"__items__": [[key, value], ...]} and a non-finite
# float {"__float__": "nan" | "inf" | "-inf"}.


def _encode(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = saveable_tensor(obj)
        return {"__tensor__": prefix}
    if isinstance(obj, np.ndarray):
        tensors[prefix] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__tensor__": prefix, "numpy": True}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else {"__float__": repr(f)}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {
            "__items__": [
                [_encode(k, f"{prefix}.k{i}", tensors), _encode(v, f"{prefix}.{i}", tensors)]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    raise ParameterError(f"training state at {prefix!r}: cannot store {type(obj).__name__} without pickle")


def _decode(obj: Any, tensors: dict[str, torch.Tensor], where: Path) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors, where) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        key = obj["__tensor__"]
        if key not in tensors:
            raise CheckpointError(f"{where}: tensor {key!r} missing from {STATE_WEIGHTS_NAME}")
        t = tensors[key]
        return t.numpy() if obj.get("numpy") else t
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors, where) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_decode(k, tensors, where): _decode(v, tensors, where) for k, v in obj["__items__"]}
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: _decode(v, tensors, where) for k, v in obj.items()}


def capture_rng_state() -> dict:
    """The global ``torch`` RNG state (dropout etc.); numpy randomness uses explicit generators."""
    return {"torch": torch.get_rng_state()}


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    if "torch" in state:
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8))


def has_training_state(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a (committed) training state to resume from."""
    return (Path(folder) / STATE_META_NAME).is_file()


def _file_record(path: Path) -> dict[str, Any]:
    return {"name": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def save_training_state(
    out_dir: str | os.PathLike,
    *,
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng_state: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write the resumable state to ``out_dir/training_state.{safetensors,json}``.

    The tensor file is written first; the JSON, written last, records its
    SHA-256 and size, so a state cut between the two writes is detected on
    load (see the module docstring).

    Parameters
    ----------
    out_dir : path
        Folder (created).
    epoch : int
        The last completed epoch (0-based).
    model : torch.nn.Module
        Its ``state_dict`` is stored (DDP wrappers unwrapped).
    optimizer, scheduler : optional
        Their ``state_dict()`` is stored.
    rng_state : dict, optional
        Defaults to :func:`capture_rng_state`; may also hold generator states.
    extra : dict, optional
        History, early-stopping state, config ... (JSON-able, tensors allowed).

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = {
        "format": _FORMAT,
        "format_version": STATE_FORMAT_VERSION,
        "epoch": int(epoch),
        "model": _encode(unwrap_model(model).state_dict(), "model", tensors),
        "optimizer": None if optimizer is None else _encode(optimizer.state_dict(), "optimizer", tensors),
        "scheduler": None if scheduler is None else _encode(scheduler.state_dict(), "scheduler", tensors),
        "rng": _encode(dict(rng_state if rng_state is not None else capture_rng_state()), "rng", tensors),
        "extra": _encode(dict(extra or {}), "extra", tensors),
    }
    write_tensors(out / STATE_WEIGHTS_NAME, tensors, metadata={"format": "pt"})
    tree["tensors"] = _file_record(out / STATE_WEIGHTS_NAME)
    write_json(out / STATE_META_NAME, tree)  # the commit point
    return out


def _check_tensor_file(tree: dict, folder: Path, meta_path: Path) -> None:
    """Refuse a tensor file that is not the one ``training_state.json`` was written with."""
    record = tree.get("tensors")
    weights_path = folder / STATE_WEIGHTS_NAME
    if record is None:
        logger.warning("%s: no record of %s (written by an older soundclass): cannot check that the "
                       "two files belong together", meta_path, STATE_WEIGHTS_NAME)
        return
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), str):
        raise CheckpointError(f"{meta_path}: field 'tensors' must hold the sha256 of {STATE_WEIGHTS_NAME}")
    if not weights_path.is_file():
        raise CheckpointError(f"{weights_path}: missing")
    if weights_path.stat().st_size != record.get("bytes") or sha256_file(weights_path) != record["sha256"]:
        raise CheckpointError(
            f"{weights_path}: does not match {meta_path.name} of epoch {tree['epoch'] + 1} (sha256 "
            f"differs): the run was interrupted while saving its state, so the weights and the "
            "epoch count disagree; cannot resume safely, start the run again in a new folder"
        )


def load_training_state(path: str | os.PathLike) -> TrainingState:
    """Read what :func:`save_training_state` wrote (``path`` = the folder).

    Raises
    ------
    CheckpointError
        If a file is missing or corrupt, or the tensor file is not the one the
        JSON was written with (a save cut short).
    """
    folder = Path(path)
    meta_path = folder / STATE_META_NAME
    tree = read_json(meta_path)
    if tree.get("format") != _FORMAT:
        raise CheckpointError(f"{meta_path}: not a soundclass training state")
    if not isinstance(tree.get("epoch"), int):
        raise CheckpointError(f"{meta_path}: missing integer field 'epoch'")
    _check_tensor_file(tree, folder, meta_path)
    tensors = read_tensors(folder / STATE_WEIGHTS_NAME)
    return TrainingState(
        epoch=tree["epoch"],
        model_state=_decode(tree.get("model") or {}, tensors, meta_path),
        optimizer_state=_decode(tree.get("optimizer"), tensors, meta_path),
        scheduler_state=_decode(tree.get("scheduler"), tensors, meta_path),
        rng_state=_decode(tree.get("rng") or {}, tensors, meta_path),
        extra=_decode(tree.get("extra") or {}, tensors, meta_path),
    )
