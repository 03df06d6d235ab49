"""The pretrained aiSFX weights: found in the installed ``aisfx`` wheel, read without pickle code.

aiSFX (A. B. Ma and A. Lerch, "Representation Learning for the Automatic
Indexing of Sound Effects Libraries", ISMIR 2022; CC BY 4.0) ships
``aisfx/models/checkpoint.pth``, a pickled tuple ``(state_dict, ds_dict)``.
Its code pins ``librosa==0.9.2`` and ``numpy==1.23.0``, so the package is
installed with ``pip install --no-deps aisfx==0.1.2`` and none of its code is
imported here: :func:`checkpoint_path` finds the file through
``importlib.metadata`` and :func:`load_aisfx_state` reads it with
``torch.load(weights_only=True)``, allowing exactly the four globals the file
needs (:data:`ALLOWED_GLOBALS`). Any other global in the file is refused.
"""

from __future__ import annotations

import os
import pickle
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from soundclass.errors import CheckpointError
from soundclass.util.packages import installed_file

__all__ = [
    "AISFX_VERSION",
    "INSTALL_COMMAND",
    "ALLOWED_GLOBALS",
    "EMBEDDING_PREFIX",
    "checkpoint_path",
    "load_aisfx_state",
    "pretrained_state",
]

AISFX_VERSION = "0.1.2"
INSTALL_COMMAND = f"pip install --no-deps aisfx=={AISFX_VERSION}"
EMBEDDING_PREFIX = "embedding_net."
_CHECKPOINT = "aisfx/models/checkpoint.pth"

#: What the unpickler may reconstruct besides tensors and containers: numpy's
#: scalar reconstructor (named ``numpy.core.multiarray.scalar`` in the file,
#: ``numpy._core`` on numpy 2), ``numpy.dtype`` and the two dtype classes of the
#: ``np.int64`` values in ``ds_dict``.
ALLOWED_GLOBALS = [
    ((np._core if hasattr(np, "_core") else np.core).multiarray.scalar,
     "numpy.core.multiarray.scalar"),
    np.dtype,
    np.dtypes.Float64DType,
    np.dtypes.Int64DType,
]


def checkpoint_path() -> Path:
    """Where the installed ``aisfx`` wheel keeps ``checkpoint.pth``.

    Raises
    ------
    CheckpointError
        ``aisfx`` is not installed, or its wheel lacks the file; the message
        gives the install command.
    """
    return installed_file("aisfx", _CHECKPOINT, what="the aiSFX weights", install=INSTALL_COMMAND)


def load_aisfx_state(path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The embedding-network weights of an aiSFX checkpoint, read with ``weights_only=True``.

    Parameters
    ----------
    path : str or os.PathLike or None
        A ``checkpoint.pth``; ``None``: the installed one (:func:`checkpoint_path`).

    Returns
    -------
    dict of str to torch.Tensor
        The ``embedding_net.*`` entries, names as in the file (the nine
        training-set heads ``fc.*`` are dropped).

    Raises
    ------
    CheckpointError
        The file is missing, is not a ``(state_dict, ds_dict)`` tuple, carries a
        global outside :data:`ALLOWED_GLOBALS`, or has no ``embedding_net.*`` tensors.
    """
    path = checkpoint_path() if path is None else Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: missing")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln]
        why = lines[0] if lines else type(exc).__name__
        raise CheckpointError(f"{path}: refused to unpickle ({why})") from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({exc})") from exc
    state = obj[0] if isinstance(obj, tuple) and len(obj) == 2 else None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a (state_dict, ds_dict) tuple, got {type(obj).__name__}")
    emb = {k: v for k, v in state.items() if k.startswith(EMBEDDING_PREFIX)}
    if not emb or not all(isinstance(v, torch.Tensor) for v in emb.values()):
        raise CheckpointError(f"{path}: no {EMBEDDING_PREFIX}* tensors")
    return emb


@lru_cache(maxsize=1)
def pretrained_state() -> dict[str, torch.Tensor]:
    """:func:`load_aisfx_state` of the installed file, read once per process (do not mutate)."""
    return load_aisfx_state()
