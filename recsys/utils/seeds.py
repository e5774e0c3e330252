"""Named random streams of one seed: :class:`Seeds`.

Training draws at random in several independent places (which users are held out for validation,
the fixed validation tasks, the item-item candidate choice). Each gets its own stream, a child of ONE
:class:`numpy.random.SeedSequence` of the training seed, named rather than numbered with a literal
offset, so that adding a stream never shifts another and a stream can be rebuilt anywhere (a test,
a second call) from the seed and its name alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


class Seeds:
    """The named child streams of ``SeedSequence(seed)``.

    ``Seeds(seed).rng(name)`` is a fresh generator at the start of the stream ``name``: the same seed
    and name always give the same draws, different names give independent streams (children of the
    same root with different spawn keys, derived from the name by CRC-32).
    """

    def __init__(self, seed: int) -> None:
        self.root = np.random.SeedSequence(seed)

    @property
    def seed(self) -> int:
        return int(self.root.entropy)

    def sequence(self, name: str) -> np.random.SeedSequence:
        """The child seed sequence of stream ``name``."""
        key = zlib.crc32(name.encode("utf-8"))
        return np.random.SeedSequence(self.root.entropy, spawn_key=(*self.root.spawn_key, key))

    def rng(self, name: str) -> np.random.Generator:
        """A fresh generator at the start of stream ``name``."""
        return np.random.default_rng(self.sequence(name))

    def __repr__(self) -> str:
        return f"Seeds({self.seed})"


VALIDATION_USERS = "validation-users"
"""The users held out of training for model selection."""
VALIDATION_TASKS = "validation-tasks"
"""The fixed support/query split of the validation users (model selection, trend choice, summary)."""
LONG_VALIDATION_TASKS = "long-validation-tasks"
"""The validation tasks with long supports on which the added paths' last band is chosen."""
SHORT_VALIDATION_TASKS = "short-validation-tasks"
"""The validation tasks with one- and two-rating supports on which the added paths' first band is chosen."""
ITEM_ITEM = "item-item"
"""The validation tasks on which the item-item blend's kind is chosen."""


@contextmanager
def deterministic_algorithms(on: bool = True) -> Iterator[None]:
    """Within the block, torch's deterministic algorithms (``torch.use_deterministic_algorithms(True,
    warn_only=True)``; ``on=False``: as it was); torch's setting as it was after it.

    Why: with more than one CPU thread the backward pass of an indexed read (``x[idx]`` with repeated
    ``idx``, as the item side of a meta-batch is gathered) adds the gradients with parallel atomic adds,
    whose order varies from run to run; the sums differ in the last bits, training amplifies that, and
    near-tied choices made on validation users flip between two runs of one command. The deterministic
    kernels sort instead (on ML-100k no slower: 4 epochs 2.3-2.6 s against 3.0-3.4 s on 2 cores).
    ``warn_only``: an op without a deterministic kernel (some CUDA ones) warns instead of failing; CUDA
    also needs ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` in the environment for deterministic cuBLAS."""
    if not on:
        yield
        return
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
