"""Optimisation: the optimizer and the per-batch learning-rate schedule of a :class:`TrainConfig`."""

from __future__ import annotations

import math
from functools import partial

import torch

from soundclass.training.config import TrainConfig

__all__ = ["make_optimizer", "make_scheduler"]


def _param_groups(model: torch.nn.Module, config: TrainConfig) -> list:
    """The model's own learning-rate groups (``aisfx``, ``whisper``: backbone at a lower rate), else one group.

    A model with pretrained parts has a ``param_groups(*, lr)`` method
    (:meth:`soundclass.models.aisfx.AisfxClassifier.param_groups`,
    :meth:`soundclass.models.whisper.WhisperClassifier.param_groups`); frozen
    parameters are left out.
    """
    own = getattr(model, "param_groups", None)
    if callable(own):
        groups = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in own(lr=config.lr)]
        return [g for g in groups if g["params"]]
    return [p for p in model.parameters() if p.requires_grad]


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW / Adam / SGD (momentum 0.9, Nesterov) over the trainable parameters.

    Models with learning-rate groups (``aisfx``, ``whisper``: the pretrained network at a
    tenth of ``config.lr``) get one optimizer group each; the schedule scales
    every group's rate alike.
    """
    params = _param_groups(model, config)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, weight_decay=config.weight_decay, momentum=0.9, nesterov=True)


def _warmup_cosine(step: int, *, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _warmup_constant(step: int, *, warmup_steps: int) -> float:
    return (step + 1) / warmup_steps if step < warmup_steps else 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, *, total_steps: int):
    """A per-batch LR schedule over ``total_steps`` optimizer steps (see :class:`TrainConfig`)."""
    total_steps = max(1, int(total_steps))
    warmup_steps = int(round(config.warmup * total_steps))
    # OneCycleLR needs >= 2 warmup steps and >= 2 annealing steps (else it divides by zero)
    if config.scheduler == "onecycle" and total_steps >= 4:
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=total_steps,
            pct_start=min(max(config.warmup, 2.0 / total_steps), 1.0 - 2.0 / total_steps),
            anneal_strategy="cos", cycle_momentum=config.optimizer == "sgd",
        )
    if config.scheduler in ("cosine", "onecycle"):
        fn = partial(_warmup_cosine, warmup_steps=warmup_steps, total_steps=total_steps)
    elif config.scheduler == "constant" and warmup_steps > 0:
        fn = partial(_warmup_constant, warmup_steps=warmup_steps)
    else:
        fn = partial(_warmup_constant, warmup_steps=0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
