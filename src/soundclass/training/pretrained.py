"""Fine-tuning from a PANNs checkpoint: which configs fit its weights, and loading them.

The front-end facts (the feature the weights were trained on, which of its
settings decide the input shape) and the models in the PANNs parameter
layout come from :mod:`soundclass.models.panns`; the file itself is read by
:func:`soundclass.models.load_pretrained` (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from soundclass.checkpoint.format import unwrap_model
from soundclass.config import FeatureConfig
from soundclass.errors import CheckpointError
from soundclass.models.panns import PANNS_FEATURE, PANNS_FRONT_END_FIELDS, PANNS_MODELS
from soundclass.models.pretrained import check_pretrained_fit, load_pretrained
from soundclass.training.config import TrainConfig, feature_config
from soundclass.util.hashing import sha256_file

__all__ = ["PRETRAINED_MODELS", "check_pretrained", "check_pretrained_file", "load_pretrained_weights"]

logger = logging.getLogger(__name__)

# Models in the parameter layout of the public PANNs checkpoints, which
# ``TrainConfig.pretrained`` can initialise.
PRETRAINED_MODELS = PANNS_MODELS


def check_pretrained(config: TrainConfig) -> None:
    """Refuse ``config.pretrained`` with a model or feature the PANNs weights cannot initialise.

    :func:`soundclass.models.pretrained.check_pretrained_fit` on the config's
    model and resolved feature (``resolve_config`` runs it too).

    Raises
    ------
    ParameterError
        The model is not one of :data:`PRETRAINED_MODELS`, or the feature
        overrides change the input the weights expect (``kind``, ``n_mels``,
        ``deltas``).  Only the config is checked, not the file.
    """
    if config.pretrained is not None:
        check_pretrained_fit(config.model, feature_config(config), pretrained=config.pretrained)


def _front_end_differences(feature: FeatureConfig) -> list[str]:
    """``name=value (PANNs: value)`` for each front-end setting that differs from PANNs'."""
    out = []
    for name in PANNS_FRONT_END_FIELDS:
        value, want = getattr(feature, name), getattr(PANNS_FEATURE, name)
        if value != want:
            out.append(f"{name}={value!r} (PANNs: {want!r})")
    return out


def check_pretrained_file(config: TrainConfig) -> None:
    """Fail before feature extraction when the pretrained file is not there."""
    if config.pretrained is not None and not os.path.isfile(config.pretrained):
        raise CheckpointError(f"{config.pretrained}: no such checkpoint file (pretrained)")


def load_pretrained_weights(model: torch.nn.Module, config: TrainConfig) -> dict[str, Any] | None:
    """Initialise ``model``'s backbone from ``config.pretrained`` (in place), as ``fit`` does.

    Parameters
    ----------
    model : torch.nn.Module
        Freshly built by ``create_model(config.model, ...)``.
    config : TrainConfig
        Its ``pretrained`` file (``None``: nothing happens) is read with
        :func:`soundclass.models.load_pretrained` (``torch.load(weights_only=True)``;
        the PANNs front end and AudioSet head are dropped, every backbone tensor
        must match by name and shape; our head ``fc`` keeps its fresh init).

    Returns
    -------
    dict or None
        Where the weights came from, as recorded in ``config.json`` and the
        checkpoints' ``train_config['pretrained_from']``: ``path`` (absolute),
        ``sha256``, ``bytes``, ``n_loaded`` (every model key but the
        ``reinitialised`` ones, which were left as built) and ``skipped`` (file
        keys not used).  Compact on purpose: the HTML report shows it.

    Raises
    ------
    ParameterError
        See :func:`check_pretrained`.
    CheckpointError
        Missing, unreadable or unsafe file, or a layout that does not fit the
        model; the message names the file.
    """
    if config.pretrained is None:
        return None
    check_pretrained(config)
    path = config.pretrained
    report = load_pretrained(unwrap_model(model), path)
    record = {
        "path": os.path.abspath(path),
        "sha256": sha256_file(path),
        "bytes": os.path.getsize(path),
        "n_loaded": len(report.loaded),
        "skipped": list(report.skipped),
        "reinitialised": list(report.missing),
    }
    logger.info("%s: loaded %d backbone tensors into %s; skipped %d (front end, AudioSet head); "
                "re-initialised %s", path, len(report.loaded), config.model, len(report.skipped),
                ", ".join(report.missing) or "nothing")
    differences = _front_end_differences(feature_config(config))
    if differences:
        logger.warning("%s: the feature differs from the PANNs front end the weights were trained on: %s",
                       path, ", ".join(differences))
    return record
