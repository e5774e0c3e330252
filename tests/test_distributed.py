"""DistributedDataParallel training (gloo, 2 CPU processes) matches single-process training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recsys.data.synthetic import make_synthetic
from recsys.meta.trainer import MetaTrainer
from recsys.recommender import ColdStartRecommender
from recsys.utils import collectives
from recsys.utils.checkpoint import load_tensors
from recsys.utils.collectives import module_tensors, share_from_rank0

WORKER = Path(__file__).with_name("distributed_worker.py")
REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single = _run([sys.executable, str(WORKER), str(tmp_path / "single.safetensors")])
    assert single.returncode == 0, single.stderr
    multi = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(WORKER),
            str(tmp_path / "multi.safetensors"),
        ]
    )
    assert multi.returncode == 0, multi.stderr
    a, meta_a = load_tensors(tmp_path / "single.safetensors")
    b, meta_b = load_tensors(tmp_path / "multi.safetensors")
    assert meta_a["world"] == 1 and meta_b["world"] == 2 and meta_a["steps"] == meta_b["steps"] > 4
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=2e-5, rtol=1e-4, msg=name)
    init, _ = load_tensors(str(tmp_path / "multi.safetensors") + ".init")
    moved = max((a[n] - init[n]).abs().max().item() for n in a if a[n].numel())
    assert moved > 1e-2  # training really changed the weights, so the match is not trivial
    # buffers: rank 0's copied to rank 1 once when DDP wraps the model, not broadcast before every step
    for rank in (0, 1):
        probe, meta = load_tensors(str(tmp_path / "multi.safetensors") + f".probe{rank}")
        assert probe["probe"].tolist() == [0.0, 0.0, 0.0], rank
        assert meta["syncs_buffers_every_step"] == 0


def test_meta_training_changes_no_buffer_so_ranks_share_them_once(monkeypatch) -> None:
    """The premise of wrapping with DDP's per-step buffer broadcast off: meta-training reads the
    buffers (item-item neighbours and their out-of-fold copies, item offsets, path weights) but
    never writes them, so the copy from rank 0 made when DDP wraps the model holds for every step."""
    seen: dict[str, dict[str, torch.Tensor]] = {}
    fit = MetaTrainer.fit

    def recording_fit(self, *args, **kwargs):
        seen["before"] = {n: b.clone() for n, b in self.learner.named_buffers()}
        out = fit(self, *args, **kwargs)
        seen["after"] = {n: b.clone() for n, b in self.learner.named_buffers()}
        return out

    monkeypatch.setattr(MetaTrainer, "fit", recording_fit)
    config = {
        "model": {"embedding_dim": 4, "hidden": [8], "hybrid": {"item_item_dense_items": 0}},
        "train": {"epochs": 2, "meta_batch_size": 16, "num_threads": 1},
    }
    ds = make_synthetic(n_users=120, n_items=60, n_interactions=2500, seed=3)
    ColdStartRecommender(config).fit_dataset(ds)
    before, after = seen["before"], seen["after"]
    assert before.keys() == after.keys()
    assert any(n.endswith("item_item_val") and b.abs().sum() > 0 for n, b in before.items())
    for name in before:
        assert torch.equal(before[name], after[name]), name


def test_rank_0_alone_prepares_the_head_and_chooses_its_weights_the_other_rank_takes_them(
    tmp_path: Path,
) -> None:
    """Under torchrun the ALS start, the item-item fit and the choices after training run on rank 0
    only (each rank used to repeat them: time and memory per rank); rank 1 leaves the head's
    preparation with rank 0's parameters and buffers (the out-of-fold copies rank 0 resized included)
    and ends with the same model and ``info``. Meanwhile rank 0 runs with rank 1's thread as well."""
    out = tmp_path / "fit"
    worker = Path(__file__).with_name("distributed_fit_worker.py")
    run = _run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(worker),
            str(out),
        ]
    )
    assert run.returncode == 0, run.stderr
    (a, meta0), (b, meta1) = (load_tensors(f"{out}.rank{rank}") for rank in (0, 1))
    assert meta0["calls"] == {"als_start": 1, "item_item": 1, "rank_mix": 1}
    assert meta1["calls"] == {"als_start": 0, "item_item": 0, "rank_mix": 0}
    # rank 0 works with the waiting rank's thread too (torchrun: LOCAL_WORLD_SIZE 2), then gives it back
    borrowed = min(os.cpu_count() or 1, 2)
    assert meta0["threads"] == {"als_start": borrowed, "item_item": borrowed, "rank_mix": borrowed}
    assert meta0["threads_after"] == meta1["threads_after"] == 1
    assert meta0["info"] == meta1["info"] and "item_item" in meta0["info"] and "rank_mix" in meta0["info"]
    assert a.keys() == b.keys()
    assert a["prepared.net.head.item_item_folds"].shape[0] == 2  # resized from [0, n, n] by rank 0's fit
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_one_process_shares_nothing_and_the_collective_timeout_reads_the_environment(monkeypatch) -> None:
    net = torch.nn.Linear(2, 2)
    before = {k: v.clone() for k, v in module_tensors(net).items()}
    assert share_from_rank0(net, {"a": 1}) == {"a": 1}
    threads = torch.get_num_threads()
    with collectives.borrowed_threads() as n:  # no other rank waits: nothing to borrow
        assert n == threads == torch.get_num_threads()
    assert all(torch.equal(before[k], v) for k, v in module_tensors(net).items())
    assert collectives.timeout().total_seconds() == collectives.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(collectives.TIMEOUT_ENV, "90")
    assert collectives.timeout().total_seconds() == 90
    monkeypatch.setenv(collectives.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="RECSYS_DISTRIBUTED_TIMEOUT_S='soon'"):
        collectives.timeout()
