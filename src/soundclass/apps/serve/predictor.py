"""What the demo needs from a model, and its implementation over a saved checkpoint.

The interface is one method, ``predict_proba(y)`` on a mono waveform at
``feature.sr``, so another backend (e.g. ONNX Runtime) can stand in for the
torch checkpoint without the app knowing.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from soundclass.config import FeatureConfig
from soundclass.errors import CheckpointError

__all__ = ["Predictor", "CheckpointPredictor", "load_predictor", "check_checkpoint_path"]


class Predictor(Protocol):
    """A model the demo can serve.

    ``feature`` says at which rate the model listens (``feature.sr``) and how
    the mel picture is drawn; ``predict_proba`` maps a mono signal
    [shape=(n,)] at ``feature.sr`` to class probabilities [shape=(len(classes),)].
    A predictor may also have ``window_seconds`` (its training window): the
    demo then adds a timeline of an upload longer than one window.
    """

    model_name: str
    classes: tuple[str, ...]
    feature: FeatureConfig

    def predict_proba(self, y: np.ndarray) -> np.ndarray: ...


class CheckpointPredictor:
    """A :class:`Predictor` over a loaded checkpoint (the same features as ``soundclass predict``).

    Parameters
    ----------
    checkpoint : Checkpoint
        From :func:`soundclass.checkpoint.format.load_checkpoint`.
    tta : int
        Test-time augmentation windows, as in :func:`soundclass.inference.predictor.predict_proba`.
    """

    def __init__(self, checkpoint: Any, *, tta: int = 1):
        self.checkpoint = checkpoint
        self.model_name = str(checkpoint.model_name)
        self.classes = tuple(checkpoint.classes)
        self.feature = checkpoint.feature
        self.tta = tta
        from soundclass.inference.windows import default_window_seconds

        self.window_seconds = default_window_seconds(checkpoint)  # the timeline's window
        from soundclass.inference.calibration import unknown_threshold

        #: Top calibrated probability below which the demo answers "unknown" (None: never).
        self.unknown_threshold = unknown_threshold(checkpoint)

    def predict_proba(self, y: np.ndarray) -> np.ndarray:
        """Class probabilities [shape=(n_classes,)] of ``y`` [shape=(n,)] at ``feature.sr``."""
        from soundclass.extraction.extract import compute_feature
        from soundclass.inference.predictor import predict_proba

        if self.feature.max_duration is not None:  # as extraction reads files
            y = y[: int(self.feature.max_duration * self.feature.sr)]
        feature = compute_feature(y, self.feature)
        from soundclass.inference.calibration import apply_checkpoint_calibration

        proba = predict_proba(self.checkpoint, [feature], tta=self.tta)
        return np.asarray(apply_checkpoint_calibration(self.checkpoint, proba))[0]  # temperature


_OS_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ELOOP: "symlink loop",
    errno.ENOENT: "not found",
    errno.ENOTDIR: "not a folder",
    errno.ENAMETOOLONG: "name too long",
}


def _os_error(path: Path, exc: OSError) -> CheckpointError:
    reason = _OS_REASONS.get(exc.errno, exc.strerror or type(exc).__name__)
    return CheckpointError(f"{path}: {reason}")


def check_checkpoint_path(path: str | os.PathLike) -> Path:
    """Say what the file system says about a checkpoint path before it is loaded.

    ``Path.is_file`` turns every :class:`OSError` into ``False``, so a folder
    one may not read, or a symlink loop, would otherwise read "no checkpoint
    here".  Each existing candidate (``path``, ``path/model.json``,
    ``path/checkpoint/model.json``, ``path/checkpoint/model.safetensors``) is
    opened for reading once.

    Raises
    ------
    CheckpointError
        ``"<path>: permission denied"``, ``"<path>: symlink loop"``,
        ``"<path>: not found"`` and the like.
    """
    p = Path(path)
    inner = ("", "model.json", "model.safetensors", "checkpoint",
             "checkpoint/model.json", "checkpoint/model.safetensors")
    for i, name in enumerate(inner):
        c = p / name if name else p
        try:
            if stat.S_ISDIR(os.stat(c).st_mode):
                os.listdir(c)
            else:
                with open(c, "rb"):
                    pass
        except FileNotFoundError:
            if i == 0:
                raise _os_error(c, FileNotFoundError(errno.ENOENT, "not found")) from None
            continue  # an optional candidate; resolve_checkpoint says which one is needed
        except OSError as exc:
            if i > 0 and exc.errno == errno.ENOTDIR:
                break  # path is a file (e.g. model.json itself)
            raise _os_error(c, exc) from None
    return p


def load_predictor(path: str | os.PathLike) -> CheckpointPredictor:
    """A :class:`CheckpointPredictor` for a checkpoint folder or a training run folder.

    Raises
    ------
    CheckpointError
        If the checkpoint cannot be read (the reason names the file) or loaded.
    """
    from soundclass.checkpoint.format import load_checkpoint, resolve_checkpoint

    p = check_checkpoint_path(path)
    return CheckpointPredictor(load_checkpoint(resolve_checkpoint(p)))
