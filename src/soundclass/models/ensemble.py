"""An ensemble of models that acts as one: probabilities averaged.

K-fold training (``train --folds K``) gives K models of one architecture,
each with its own standardization statistics.  :class:`Ensemble` holds them
and returns, as logits, the log of the mean of the members' softmax
probabilities::

    logits = log(mean_k softmax(member_k((x - mean_k) / std_k)))

so a downstream ``softmax(logits)`` is exactly the mean probability
(``logsumexp`` keeps it finite); temperature scaling then divides these logits.

It is registered twice, one name per input kind, so a checkpoint holds it
like any model and reports the right input kind:

- ``'ensemble'``: members taking ``(B, n_features, T)`` (default member ``'cnn'``);
- ``'ensemble-vector'``: members taking ``(B, n_features)`` (default ``'seed-cnn'``).

The checkpoint's ``model_kwargs`` are :func:`ensemble_kwargs`, e.g.
``{"member": "cnn", "n_members": 5, "member_kwargs": {}, "standardize": true}``;
the member weights are ``members.<k>.*`` and the statistics the buffers
``norm_mean``/``norm_std`` [shape=(K, n_features)] in the state dict.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from soundclass.errors import ParameterError, check_positive_int
from soundclass.models.panns import CNN_SPEC
from soundclass.models.registry import create_model, list_models, model_spec, register_model
from soundclass.models.seed import SEED_CNN_SPEC

__all__ = ["Ensemble", "ENSEMBLE_NAMES", "ensemble_name", "ensemble_kwargs", "build_ensemble"]

#: Registry name of the ensemble for each member input kind.
ENSEMBLE_NAMES = {"sequence": "ensemble", "vector": "ensemble-vector"}
_DEFAULT_MEMBER = {"sequence": "cnn", "vector": "seed-cnn"}


class Ensemble(nn.Module):
    """Mean-probability ensemble of classifiers with the same classes and input.

    Parameters
    ----------
    members : list of nn.Module
        Each maps the same input to logits ``(B, n_classes)``.
    norm_mean, norm_std : torch.Tensor [shape=(K, n_features)], optional
        Per-member standardization applied to the input before each member
        (along the feature axis 1); give both or neither.
    """

    def __init__(
        self,
        members: Sequence[nn.Module],
        *,
        norm_mean: torch.Tensor | None = None,
        norm_std: torch.Tensor | None = None,
    ):
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(m, nn.Module) for m in members):
            raise ParameterError("members must be a non-empty list of nn.Module")
        if (norm_mean is None) != (norm_std is None):
            raise ParameterError("norm_mean and norm_std must be given together")
        self.members = nn.ModuleList(members)
        # the shortest input every member takes (the predictor and the exporters pad to it)
        self.min_frames = max(int(getattr(m, "min_frames", 1)) for m in members)
        if norm_mean is not None:
            mean = torch.as_tensor(norm_mean, dtype=torch.float32)
            std = torch.as_tensor(norm_std, dtype=torch.float32)
            if mean.ndim != 2 or mean.shape[0] != len(members) or std.shape != mean.shape:
                raise ParameterError(
                    f"norm_mean/norm_std must have shape ({len(members)}, n_features), "
                    f"got {tuple(mean.shape)} and {tuple(std.shape)}"
                )
            if not std.is_meta and not bool((std > 0).all()):  # meta: shapes only (checkpoint checks)
                raise ParameterError("norm_std must be positive")
            self.register_buffer("norm_mean", mean.clone())
            self.register_buffer("norm_std", std.clone())
        else:
            self.norm_mean = self.norm_std = None

    def _member_input(self, x: torch.Tensor, k: int) -> torch.Tensor:
        if self.norm_mean is None:
            return x
        mean, std = self.norm_mean[k], self.norm_std[k]  # (n_features,)
        if x.ndim == 3:  # (B, n_features, T)
            mean, std = mean[:, None], std[:, None]
        return (x - mean) / std

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Each member's logits [shape=(K, B, n_classes)]."""
        return torch.stack([m(self._member_input(x, k)) for k, m in enumerate(self.members)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` -> log mean probability [shape=(B, n_classes)], usable as logits."""
        log_p = torch.log_softmax(self.member_logits(x), dim=-1)  # (K, B, n_classes)
        return torch.logsumexp(log_p, dim=0) - math.log(len(self.members))


def ensemble_name(member: str) -> str:
    """The registry name of an ensemble of ``member`` models (by its input kind)."""
    return ENSEMBLE_NAMES[model_spec(member).input]


def ensemble_kwargs(
    member: str, *, n_members: int, member_kwargs: Mapping[str, Any] | None = None, standardize: bool = False
) -> dict[str, Any]:
    """The ``model_kwargs`` (JSON-able) that rebuild an ensemble with ``create_model``."""
    return {
        "member": str(member),
        "n_members": int(n_members),
        "member_kwargs": dict(member_kwargs or {}),
        "standardize": bool(standardize),
    }


def build_ensemble(
    *,
    kind: str,
    n_classes: int,
    n_features: int,
    member: str | None = None,
    n_members: int = 2,
    member_kwargs: Mapping[str, Any] | None = None,
    standardize: bool = False,
) -> Ensemble:
    """Build an untrained ensemble of ``n_members`` registered ``member`` models.

    Parameters
    ----------
    kind : {'sequence', 'vector'}
        Input kind the members must take.
    n_classes, n_features : int
    member : str, optional
        Registered model name; default ``'cnn'`` (sequence) or ``'seed-cnn'`` (vector).
    n_members : int >= 1
    member_kwargs : dict, optional
        Passed to every member's builder.
    standardize : bool
        Whether to hold per-member ``norm_mean``/``norm_std`` buffers (filled
        with 0/1 here; loaded from the checkpoint's state dict).
    """
    member = _DEFAULT_MEMBER[kind] if member is None else member
    if member in ENSEMBLE_NAMES.values():
        raise ParameterError(f"member={member!r}: an ensemble cannot hold ensembles")
    if member not in list_models():
        raise ParameterError(f"unknown member model {member!r}; choose from {', '.join(list_models())}")
    if model_spec(member).input != kind:
        raise ParameterError(
            f"member {member!r} takes {model_spec(member).input} input; use {ensemble_name(member)!r}"
        )
    n_members = check_positive_int("n_members", n_members)
    members = [
        create_model(member, n_classes=n_classes, n_features=n_features, **dict(member_kwargs or {}))
        for _ in range(n_members)
    ]
    norm = {}
    if standardize:
        norm = {"norm_mean": torch.zeros(n_members, n_features), "norm_std": torch.ones(n_members, n_features)}
    return Ensemble(members, **norm)


def _spec(member_spec, kind: str):
    return dataclasses.replace(
        member_spec,
        standardize=False,  # each member's statistics live inside the ensemble
        description=f"mean-probability ensemble of {kind} models (k-fold); default member "
        f"{_DEFAULT_MEMBER[kind]!r}",
    )


@register_model(ENSEMBLE_NAMES["sequence"], spec=_spec(CNN_SPEC, "sequence"))
def ensemble(*, n_classes: int, n_features: int, **kwargs) -> Ensemble:
    return build_ensemble(kind="sequence", n_classes=n_classes, n_features=n_features, **kwargs)


@register_model(ENSEMBLE_NAMES["vector"], spec=_spec(SEED_CNN_SPEC, "vector"))
def ensemble_vector(*, n_classes: int, n_features: int, **kwargs) -> Ensemble:
    return build_ensemble(kind="vector", n_classes=n_classes, n_features=n_features, **kwargs)
