"""Trained models on disk: the checkpoint format and the resumable training state.

Stage 8 (imports everything up to extraction; ``inference`` and ``training``
both read and write through it).  ``format`` (``model.safetensors`` +
``model.json``, never pickled: saving, loading with every bound checked before
any allocation, resolving a run folder to its checkpoint), ``state`` (the
crash-consistent training state of ``last/`` for ``--resume``) and ``files``
(the safetensors and JSON files of both, written atomically).
"""

from soundclass.checkpoint.format import (
    Checkpoint,
    as_checkpoint,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from soundclass.checkpoint.state import TrainingState, load_training_state, save_training_state

__all__ = [
    "Checkpoint",
    "as_checkpoint",
    "load_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
    "TrainingState",
    "load_training_state",
    "save_training_state",
]
