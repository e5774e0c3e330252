"""Multi-process training on torch.distributed (DistributedDataParallel), launched by ``torchrun``.

``recsys train --nproc N`` re-launches itself under ``torchrun --nproc_per_node N``; every process
then joins the group set up by torchrun's environment (gloo on CPU, NCCL on GPU). Multi-node: run the
same command on every node with torchrun's rendezvous settings, e.g.::

    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        --rdzv_id myjob -m recsys train --dataset ml-1m --device cuda ...

Each rank draws the same global meta-batches (same seed) and takes its share of the users; DDP
averages the gradients, so training matches a single process with the same global batch.
Checkpoints, the saved model and MLflow logging happen on rank 0 only, and so does the work that does
not split between ranks: the head's preparation (the ALS start, the item-item blend) and the weights
chosen after training; the other ranks wait for it (the collective timeout is
:data:`recsys.utils.collectives.DEFAULT_TIMEOUT_S`, ``RECSYS_DISTRIBUTED_TIMEOUT_S`` overrides it) and
take rank 0's result (:func:`recsys.utils.collectives.share_from_rank0`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from recsys.utils import collectives


def world_size_from_env() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_from_env(device: str = "cpu") -> tuple[int, int]:
    """Join the process group torchrun described (no-op for a single process); returns (rank, world)."""
    world = world_size_from_env()
    if world <= 1:
        return 0, 1
    if not torch.distributed.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # the other ranks wait while rank 0 prepares the head alone: a long collective timeout
        torch.distributed.init_process_group(backend=backend, timeout=collectives.timeout())
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def local_device(device: str) -> str:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun."""
    if device == "cuda" and world_size_from_env() > 1:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def shutdown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


def relaunch(nproc: int, argv: list[str]) -> int:
    """Run ``python -m recsys <argv>`` under torchrun with ``nproc`` processes; returns its exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "recsys",
        *argv,
    ]
    return subprocess.call(cmd)
