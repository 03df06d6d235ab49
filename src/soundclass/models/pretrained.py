"""Loading user-downloaded PANNs checkpoints (``Cnn14_mAP=0.431.pth`` etc.) safely.

The file is read with ``torch.load(..., weights_only=True)``, so it can hold
tensors and plain containers only, never code.  The PANNs front end
(``spectrogram_extractor.*``, ``logmel_extractor.*``) and the AudioSet head
(``fc_audioset.*``) are dropped; every remaining (backbone) tensor must match
the model by name and shape, and our head ``fc`` keeps its fresh weights.
:func:`check_pretrained_fit` refuses, before any file is read, a model or a
feature that such weights cannot initialise.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from soundclass.config import FeatureConfig
from soundclass.errors import CheckpointError, ParameterError
from soundclass.models.panns import PANNS_FEATURE, PANNS_INPUT_FIELDS, PANNS_MODELS

__all__ = ["PretrainedReport", "load_pretrained", "check_pretrained_fit", "DROPPED_PREFIXES", "HEAD_PREFIXES"]

# Parts of a PANNs checkpoint that soundclass models do not have.
DROPPED_PREFIXES = ("spectrogram_extractor.", "logmel_extractor.", "fc_audioset.")
# Parts of our models that a backbone checkpoint does not provide.
HEAD_PREFIXES = ("fc.",)


@dataclass(frozen=True)
class PretrainedReport:
    """What :func:`load_pretrained` did.

    Attributes
    ----------
    path : str
        The checkpoint file.
    loaded : tuple of str
        Model keys whose tensors were copied from the checkpoint.
    skipped : tuple of str
        Checkpoint keys ignored (front end, AudioSet head, and with
        ``strict_backbone=False`` the unmatched ones).
    missing : tuple of str
        Model keys left as initialised (our head, and with
        ``strict_backbone=False`` any backbone key absent from the file).
    """

    path: str
    loaded: tuple[str, ...]
    skipped: tuple[str, ...]
    missing: tuple[str, ...]


def check_pretrained_fit(model: str, feature: FeatureConfig, *, pretrained: str | os.PathLike | None) -> None:
    """Refuse ``pretrained`` weights for a model or feature the PANNs weights cannot initialise.

    Parameters
    ----------
    model : str
        Registered model name; it must be one of the PANNs-layout models
        (:data:`soundclass.models.panns.PANNS_MODELS`).
    feature : FeatureConfig
        The feature the model will be trained on; the settings that decide
        the weights' input (``kind``, ``n_mels``, ``deltas``) must be PANNs'.
    pretrained : path or None
        The weights file (only named in messages; ``None``: nothing to check).

    Raises
    ------
    ParameterError
        The model is not a PANNs-layout one, or the feature changes the input
        the weights expect.  Only the settings are checked, not the file.
    """
    if pretrained is None:
        return
    if model not in PANNS_MODELS:
        raise ParameterError(
            f"pretrained={pretrained!r} needs a PANNs-layout model; model={model!r} "
            f"is not one (choose from {', '.join(PANNS_MODELS)})"
        )
    for name in PANNS_INPUT_FIELDS:
        value, want = getattr(feature, name), getattr(PANNS_FEATURE, name)
        if value != want:
            raise ParameterError(
                f"feature {name}={value!r} makes the pretrained weights of {pretrained!r} "
                f"meaningless (PANNs {model} takes {name}={want!r}); drop the override "
                "or train without pretrained"
            )


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickle refused by weights_only, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: cannot be read as a weights-only torch checkpoint ({first})") from exc
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a state_dict or {{'model': state_dict}}, got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not named tensors: {bad[:5]}")
    return obj


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, strict_backbone: bool = True) -> PretrainedReport:
    """Copy a PANNs checkpoint's backbone into ``model`` (in place).

    Parameters
    ----------
    model : torch.nn.Module
        A model in PANNs layout, e.g. ``create_model('cnn14', n_classes=20, n_features=64)``.
    path : str or os.PathLike
        A ``.pth`` file holding ``{'model': state_dict}`` or a bare state_dict.
    strict_backbone : bool
        If True (default), every backbone tensor of the file and of the model
        (all but the head ``fc``) must match by name and shape; otherwise only
        the matching ones are loaded and the rest reported.

    Returns
    -------
    PretrainedReport
        Keys loaded, skipped and left missing.

    Raises
    ------
    CheckpointError
        Unreadable, unsafe (pickled objects) or mismatching file; the message
        names the file and the offending keys.
    """
    path = os.fspath(path)
    state = _read_state_dict(path)
    target = model.state_dict()
    skipped = sorted(k for k in state if k.startswith(DROPPED_PREFIXES))
    backbone = {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}
    wanted = {k for k in target if not k.startswith(HEAD_PREFIXES)}

    unexpected = sorted(set(backbone) - wanted)
    absent = sorted(wanted - set(backbone))
    wrong_shape = sorted(
        f"{k} {tuple(backbone[k].shape)} != {tuple(target[k].shape)}"
        for k in set(backbone) & wanted
        if backbone[k].shape != target[k].shape
    )
    if strict_backbone and (unexpected or absent or wrong_shape):
        parts = []
        if wrong_shape:
            parts.append(f"shape mismatch: {', '.join(wrong_shape[:8])}")
        if absent:
            parts.append(f"missing from file: {', '.join(absent[:8])}")
        if unexpected:
            parts.append(f"not in model: {', '.join(unexpected[:8])}")
        raise CheckpointError(f"{path}: does not fit {type(model).__name__}; " + "; ".join(parts))

    loadable = {
        k: v for k, v in backbone.items() if k in wanted and v.shape == target[k].shape
    }
    with torch.no_grad():
        for key, value in loadable.items():
            target[key].copy_(value.to(target[key].dtype))
    # target holds references to the live parameters/buffers, so copy_ updated the model.
    skipped += sorted(set(backbone) - set(loadable))
    missing = sorted(set(target) - set(loadable))
    return PretrainedReport(
        path=path, loaded=tuple(sorted(loadable)), skipped=tuple(sorted(skipped)), missing=tuple(missing)
    )
