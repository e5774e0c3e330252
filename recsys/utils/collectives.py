"""What the training recipe needs from torch.distributed, below every layer that trains.

Under ``torchrun`` every rank runs the same recipe, but the work that does not split between ranks
(the ALS start, the item-item blend, the weights chosen after training) is done by rank 0 alone; the
other ranks wait and then take rank 0's result (:func:`share_from_rank0`), while rank 0 runs it with
their threads too (:func:`rank0_alone` wraps such a step). Before, every rank repeated it: a 25M-row
log's preparation took 707 s (ALS start) and 387 s (item-item) on each of two ranks, and both held its
memory.

Without an initialised process group (one process) everything here is a no-op.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, Concatenate, ParamSpec

import torch

P = ParamSpec("P")

TIMEOUT_ENV = "RECSYS_DISTRIBUTED_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 4 * 3600.0
"""How long a rank waits for the others in one collective (``RECSYS_DISTRIBUTED_TIMEOUT_S`` overrides):
the other ranks wait while rank 0 prepares the head alone (about 14 min for a 25M-row log on 2 CPU
cores), far beyond torch's defaults (30 min for gloo, 10 min for NCCL)."""


def timeout() -> timedelta:
    """The process group's collective timeout (:data:`DEFAULT_TIMEOUT_S`, or the environment's)."""
    raw = os.environ.get(TIMEOUT_ENV, "")
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV}={raw!r}: expected a number of seconds") from None
    return timedelta(seconds=seconds)


def rank_world() -> tuple[int, int]:
    """(rank, world size) of an initialised torch.distributed process group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of ``module`` by name, the buffers left out of ``state_dict``
    (``persistent=False``, e.g. training's out-of-fold item-item copies) included."""
    return dict(module.named_parameters()) | dict(module.named_buffers())


def share_from_rank0(module: torch.nn.Module, info: dict[str, Any]) -> dict[str, Any]:
    """A collective: every rank leaves with rank 0's parameters, buffers (shapes included: a buffer
    rank 0 resized, such as the out-of-fold copies, is replaced) and ``info``; returns that ``info``.
    Backend-agnostic (pickled through ``broadcast_object_list``, which gloo and NCCL both carry)."""
    rank, world = rank_world()
    if world <= 1:
        return info
    payload: list[Any] = [None]
    if rank == 0:
        payload = [({k: v.detach().cpu() for k, v in module_tensors(module).items()}, info)]
    torch.distributed.broadcast_object_list(payload, src=0)
    if rank == 0:
        return info
    tensors, shared = payload[0]
    _assign(module, tensors)
    return shared


def _assign(module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    if missing := set(tensors) - set(params) - set(buffers):
        raise RuntimeError(f"rank 0 shared tensors this rank's model lacks: {sorted(missing)}")
    with torch.no_grad():
        for name, value in tensors.items():
            if name in params:
                params[name].copy_(value)
                continue
            owner_name, _, leaf = name.rpartition(".")
            owner = module.get_submodule(owner_name) if owner_name else module
            owner._buffers[leaf] = value.to(buffers[name].device)


@contextmanager
def borrowed_threads() -> Iterator[int]:
    """On rank 0 of a process group, while the other ranks on its machine wait for it: torch's
    intra-op threads times ``LOCAL_WORLD_SIZE`` (torchrun starts each rank with ``OMP_NUM_THREADS=1``),
    at most the machine's CPU count, restored on exit. Yields the number of threads in use; anywhere
    else (one process, another rank) changes nothing."""
    rank, world = rank_world()
    before = torch.get_num_threads()
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    wanted = min(os.cpu_count() or 1, before * local)
    if rank != 0 or world <= 1 or wanted <= before:
        yield before
        return
    torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        torch.set_num_threads(before)


def rank0_alone(
    step: Callable[Concatenate[torch.nn.Module, P], dict[str, Any]],
) -> Callable[Concatenate[torch.nn.Module, P], dict[str, Any]]:
    """A training step that changes its first argument (a module) and returns ``info`` entries, run by
    rank 0 alone with the waiting ranks' threads (:func:`borrowed_threads`); every rank leaves with rank
    0's module tensors and ``info`` (:func:`share_from_rank0`). One process: the step itself."""

    @functools.wraps(step)
    def run(module: torch.nn.Module, *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
        if rank_world()[0] != 0:
            return share_from_rank0(module, {})
        with borrowed_threads():
            info = step(module, *args, **kwargs)
        return share_from_rank0(module, info)

    return run
