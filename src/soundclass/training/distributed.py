"""Distributed data-parallel training under ``torchrun``.

When ``WORLD_SIZE`` is set (``torchrun --nproc_per_node=N ...``),
:func:`setup` joins the process group (``gloo`` on CPU, ``nccl`` on GPU);
:func:`soundclass.training.fit` then trains a ``DistributedDataParallel``
model on a ``DistributedSampler`` and only rank 0 writes files or shows
progress bars.  Without ``WORLD_SIZE`` everything is single-process and
these helpers are no-ops.

Evaluation policy: validation runs on rank 0 only, over the exact list of
validation clips (no ``DistributedSampler``, hence no padded duplicates);
the other ranks wait at a barrier.  Every rank holds identical weights (DDP
averages the gradients), so rank 0's view is the model's.  The early-stopping
decision is broadcast from rank 0 so that all ranks stop at the same epoch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from soundclass.errors import ParameterError

__all__ = [
    "DistContext",
    "context",
    "setup",
    "cleanup",
    "wrap_model",
    "barrier",
    "sync_buffers",
    "broadcast_flag",
    "all_reduce_sum",
    "device_for",
    "requested",
    "launched_rank",
]


@dataclass(frozen=True)
class DistContext:
    """Rank, world size and local rank of this process (0, 1, 0 when single-process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ParameterError(f"environment variable {name}={raw!r} must be an integer") from exc


def launched_rank() -> int:
    """This process's rank as set by ``torchrun`` (``RANK``), 0 when not launched by it.

    Usable before :func:`setup`, e.g. so that only rank 0 prints and reports.
    """
    return _env_int("RANK", 0)


def requested() -> bool:
    """Whether the process was started by ``torchrun`` with more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def context() -> DistContext:
    """This process's place in the process group (single-process if none is initialized)."""
    if tdist.is_available() and tdist.is_initialized():
        return DistContext(tdist.get_rank(), tdist.get_world_size(), _env_int("LOCAL_RANK", 0))
    return DistContext()


def setup(*, backend: str | None = None) -> DistContext:
    """Join the process group described by ``torchrun``'s environment variables.

    Parameters
    ----------
    backend : str, optional
        ``'gloo'`` (CPU, the default without CUDA) or ``'nccl'`` (CUDA).

    Returns
    -------
    DistContext
        Single-process when ``WORLD_SIZE`` is unset or 1.
    """
    if not requested():
        return context()
    if not tdist.is_available():
        raise ParameterError("WORLD_SIZE is set but this torch build has no torch.distributed")
    if not tdist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(_env_int("LOCAL_RANK", 0))
        tdist.init_process_group(backend=backend)
    return context()


def cleanup() -> None:
    """Leave the process group (no-op when single-process)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def device_for(ctx: DistContext, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` for CUDA runs, else ``device``."""
    if ctx.active and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrap_model(model: torch.nn.Module, *, device: torch.device) -> torch.nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself.

    Parameters are broadcast from rank 0 when wrapping, so every rank starts
    from the same weights.
    """
    ctx = context()
    if not ctx.active:
        return model

    if device.type == "cuda":
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def sync_buffers(model: torch.nn.Module, *, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (e.g. BatchNorm running statistics) to every rank.

    DDP averages gradients, so parameters agree on every rank, but buffers
    updated in ``forward`` follow each rank's own last batch; after this call
    every replica is identical.  No-op when single-process.
    """
    if not context().active:
        return
    for buf in model.buffers():
        tdist.broadcast(buf.data, src=src)


def barrier() -> None:
    """Wait for every rank (no-op when single-process)."""
    if context().active:
        tdist.barrier()


def _comm_device() -> torch.device:
    """NCCL communicates CUDA tensors, gloo CPU tensors."""
    if tdist.get_backend() == "nccl":
        return torch.device("cuda", context().local_rank)
    return torch.device("cpu")


def broadcast_flag(flag: bool, *, src: int = 0) -> bool:
    """Rank ``src``'s ``flag`` on every rank (identity when single-process)."""
    if not context().active:
        return bool(flag)
    t = torch.tensor([1 if flag else 0], dtype=torch.int64, device=_comm_device())
    tdist.broadcast(t, src=src)
    return bool(t.item())


def all_reduce_sum(values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over every rank (identity when single-process)."""
    if not context().active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=_comm_device())
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t.tolist()
