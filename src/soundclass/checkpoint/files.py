"""The two files of every saved state: safetensors tensors and a JSON object.

Both :mod:`soundclass.checkpoint.format` (``model.safetensors`` +
``model.json``) and :mod:`soundclass.checkpoint.state`
(``training_state.safetensors`` + ``training_state.json``) are written and read
with these functions: writes are atomic (:mod:`soundclass.util.atomic`), and a
file that is missing or unreadable is a :class:`~soundclass.errors.CheckpointError`
naming it.  Nothing here unpickles.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from soundclass.errors import CheckpointError
from soundclass.util.atomic import write_bytes_atomic, write_json_atomic

__all__ = ["read_json", "read_tensors", "saveable_tensor", "write_json", "write_tensors"]


def saveable_tensor(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, on the CPU, contiguous and with storage of its own.

    safetensors refuses tensors that share storage (tied weights, views), so
    every tensor handed to :func:`write_tensors` is cloned.

    Parameters
    ----------
    t : torch.Tensor [shape=any]

    Returns
    -------
    torch.Tensor [shape=t.shape]
    """
    return t.detach().to("cpu").contiguous().clone()


def write_tensors(path: Path, tensors: Mapping[str, torch.Tensor], *, metadata: Mapping[str, str]) -> None:
    """Write ``tensors`` as one safetensors file at ``path``, atomically.

    Parameters
    ----------
    path : pathlib.Path
        Destination; its folder must exist.
    tensors : mapping of str to torch.Tensor
        Contiguous CPU tensors not sharing storage (see :func:`saveable_tensor`).
    metadata : mapping of str to str
        The header's ``__metadata__``.
    """
    write_bytes_atomic(path, safetensors_save(dict(tensors), metadata=dict(metadata)))


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented UTF-8 JSON at ``path``, atomically (NaN and infinities allowed)."""
    write_json_atomic(path, obj, indent=2, allow_nan=True)


def read_json(path: Path) -> dict:
    """The JSON object stored at ``path``.

    Raises
    ------
    CheckpointError
        ``"{path}: missing"``, ``"{path}: not valid JSON (...)"`` or, for a
        valid document that is not an object, ``"{path}: expected a JSON object, got ..."``.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file at ``path``, on the CPU.

    Raises
    ------
    CheckpointError
        ``"{path}: missing"`` or ``"{path}: corrupt safetensors file (...)"``.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: corrupt safetensors file ({exc})") from exc
