"""Crashes and resume: real ``recsys train`` processes killed with SIGKILL at random steps and in the
middle of a checkpoint write, then ``--resume``d to the same parameters as an uninterrupted run; and
non-finite losses or gradients: the step is skipped, and a run of them stops training with a clear
error while the last good checkpoint stays on disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys import ColdStartRecommender
from recsys.data.synthetic import make_synthetic, write_synthetic
from recsys.errors import ModelFileError, TrainingError
from recsys.meta.maml import MetaLearner
from recsys.meta.trainer import MetaTrainer
from recsys.utils.checkpoint import load_tensors
from recsys.utils.io import stale_temps

REPO = Path(__file__).resolve().parents[1]

# small enough to train in a couple of seconds, big enough for ~50 meta-steps (checkpoint every 2)
CONFIG = """
[model]
embedding_dim = 4
hidden = [8]
factor_dim = 8
[model.hybrid]
item_item = false
[train]
epochs = 6
meta_batch_size = 16
checkpoint_every = 2
checkpoint_interval_s = 0
num_threads = 1
patience = 0
"""
TOLERANCE = 1e-6  # resumed vs uninterrupted weights (the replay is exact; this only absorbs float noise)
WAIT = 180.0  # generous: the machine may be shared


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "RECSYS_PROGRESS": "0", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RECSYS_TEST_WRITE_PAUSE", None)
    env.update(extra)
    return env


def _train(data: Path, out: Path, config: Path, *, resume: bool = False, **env: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "recsys", "train", "--dataset", str(data), "--out", str(out)]
    args += ["--config", str(config), "--protocol", "random", "--no-mlflow"]
    return subprocess.Popen(
        args + (["--resume"] if resume else []),
        cwd=REPO,
        env=_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, f"training ended before the kill:\n{proc.communicate()[1][-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def _checkpoint_step(path: Path) -> int:
    """The global step of a complete checkpoint (-1 when there is none yet)."""
    if not path.exists():
        return -1
    _, meta = load_tensors(path)  # never torn: written to a temporary file, fsync'ed, renamed
    return int(meta["state"]["global_step"])


def _wait(condition, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"training exited ({proc.returncode}) before {what}:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _assert_intact(ckpt: Path) -> dict:
    tensors, meta = load_tensors(ckpt)
    assert meta["kind"] == "recsys-checkpoint"
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("model."))
    return meta["state"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_tensors(path)
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


def test_sigkill_at_random_steps_and_mid_checkpoint_write_then_resume_matches_uninterrupted(tmp_path) -> None:
    rng = np.random.default_rng(20240607)  # the kill points are random, but reproducible
    data = write_synthetic(
        make_synthetic(n_users=200, n_items=60, n_interactions=3500, seed=4), tmp_path / "d"
    )
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    ref_out, out = tmp_path / "reference", tmp_path / "crashed"
    ckpt = out / "checkpoint.safetensors"
    reference = _train(data, ref_out, config)  # the uninterrupted run, alongside the crashing ones

    # 1. a fresh run killed at a random step
    proc = _train(data, out, config)
    target = int(rng.integers(4, 16))
    _wait(lambda: _checkpoint_step(ckpt) >= target, proc, f"a checkpoint at step {target}")
    time.sleep(float(rng.uniform(0.0, 0.05)))
    _kill(proc)
    first = _assert_intact(ckpt)
    assert not (out / "model.safetensors").exists()

    # 2. resumed, and killed while it writes its first checkpoint: half of the new file is on disk in
    #    the temporary file (test hook RECSYS_TEST_WRITE_PAUSE), the checkpoint itself is untouched
    before = ckpt.read_bytes()
    proc = _train(data, out, config, resume=True, RECSYS_TEST_WRITE_PAUSE="checkpoint.safetensors=60")
    _wait(lambda: bool(stale_temps(ckpt)) and stale_temps(ckpt)[0].stat().st_size > 0, proc, "a temp file")
    _kill(proc)
    left_behind = stale_temps(ckpt)
    assert left_behind, "the kill should have left a half-written temporary file"
    assert ckpt.read_bytes() == before  # the rename never happened: the last complete checkpoint stays
    assert _assert_intact(ckpt)["global_step"] == first["global_step"]

    # 3. resumed again and killed at another random step
    proc = _train(data, out, config, resume=True)
    target = first["global_step"] + int(rng.integers(6, 20))
    _wait(lambda: _checkpoint_step(ckpt) >= target, proc, f"a checkpoint at step {target}")
    time.sleep(float(rng.uniform(0.0, 0.05)))
    _kill(proc)
    third = _assert_intact(ckpt)
    assert third["global_step"] > first["global_step"]
    # the kill above may itself land in a checkpoint write (one every 2 steps) and leave a new temp
    # file; what must be gone is the one the earlier kill left
    assert not set(left_behind) & set(stale_temps(ckpt)), (
        "a resumed run removes the temp files a killed one left"
    )

    # 4. resumed to completion
    proc = _train(data, out, config, resume=True)
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr
    _, ref_stderr = reference.communicate(timeout=WAIT)
    assert reference.returncode == 0, ref_stderr
    assert not stale_temps(ckpt)
    assert _assert_intact(ckpt)["finished"]

    want, got = _weights(ref_out / "model.safetensors"), _weights(out / "model.safetensors")
    assert want.keys() == got.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], atol=TOLERANCE, rtol=0, msg=name)
    losses = [
        [h["train_loss"] for h in json.loads((o / "history.json").read_text())["history"]]
        for o in (ref_out, out)
    ]
    assert losses[1] == pytest.approx(losses[0], rel=1e-6) and len(losses[0]) == 6
    assert ColdStartRecommender.load(out).recommend({1: 5.0}, n=3) == ColdStartRecommender.load(
        ref_out
    ).recommend({1: 5.0}, n=3)


# ---- non-finite losses and gradients (in process: the loss is made non-finite on chosen steps) ----

TINY = {
    "model": {"embedding_dim": 4, "hidden": [8], "factor_dim": 8, "hybrid": {"item_item": False}},
    "train": {
        "epochs": 2,
        "meta_batch_size": 16,
        "num_threads": 1,
        "patience": 0,
        "checkpoint_every": 1,
        "checkpoint_interval_s": 0,
    },
}


@pytest.fixture(scope="module")
def small():
    return make_synthetic(n_users=140, n_items=50, n_interactions=2500, seed=11)


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def _inject(monkeypatch, bad: dict[int, str]) -> list[dict]:
    """Make meta-step n's loss NaN (``"nan"``), +inf (``"inf"``) or its gradient infinite (``"grad"``);
    record every step's state before and after."""
    original_loss, original_step = MetaLearner.meta_loss, MetaTrainer._step
    calls = {"n": 0}
    steps: list[dict] = []

    def meta_loss(self, batch, **kw):
        loss = original_loss(self, batch, **kw)
        kind = bad.get(calls["n"])
        if kind == "nan":
            return loss * float("nan")
        if kind == "inf":
            return loss + float("inf")
        if kind == "grad":
            return _InfGrad.apply(loss)
        return loss

    def step(self, batch, *args, **kw):
        calls["n"] += 1
        before = {k: v.clone() for k, v in self.learner.state_dict().items()}
        adam = [s["exp_avg"].clone() for s in self.optimizer.state.values()]
        ckpt = self.checkpoint.read_bytes() if self.checkpoint and self.checkpoint.exists() else None
        loss = original_step(self, batch, *args, **kw)
        after = self.learner.state_dict()
        steps.append(
            {
                "n": calls["n"],
                "loss": float(loss),
                "unchanged": all(torch.equal(before[k], after[k]) for k in before),
                "adam_unchanged": all(
                    torch.equal(a, s["exp_avg"])
                    for a, s in zip(adam, self.optimizer.state.values(), strict=False)
                ),
                "checkpoint_before": ckpt,
                "finite": all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point()),
            }
        )
        return loss

    monkeypatch.setattr(MetaLearner, "meta_loss", meta_loss)
    monkeypatch.setattr(MetaTrainer, "_step", step)
    return steps


def test_nonfinite_loss_or_gradient_skips_the_step_and_is_recorded(small, monkeypatch, tmp_path) -> None:
    bad = {3: "nan", 4: "inf", 9: "grad"}  # two in a row, then a finite loss with an infinite gradient
    steps = _inject(monkeypatch, bad)
    rec = ColdStartRecommender(TINY).fit_dataset(small, checkpoint=tmp_path / "ckpt.safetensors")
    for s in steps:
        if s["n"] in bad:
            assert s["unchanged"] and s["adam_unchanged"], f"step {s['n']} ({bad[s['n']]}) changed the model"
            assert np.isnan(s["loss"])  # reported as skipped, even when only the gradient was infinite
        else:
            assert not s["unchanged"] and np.isfinite(s["loss"])
        assert s["finite"]
    assert sum(h["skipped_steps"] for h in rec.history) == len(bad) and len(rec.history) == 2
    assert all(np.isfinite(h["train_loss"]) for h in rec.history)
    assert all(np.isfinite(s).all() for _, s in rec.recommend({1: 4.0}, n=5))


def test_persistent_nonfinite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(
    small, monkeypatch, tmp_path
) -> None:
    ckpt = tmp_path / "ckpt.safetensors"
    cfg = TINY | {"train": TINY["train"] | {"max_nonfinite_steps": 3}}
    steps = _inject(monkeypatch, dict.fromkeys(range(4, 1000), "nan"))
    with pytest.raises(TrainingError) as err:
        ColdStartRecommender(cfg).fit_dataset(small, checkpoint=ckpt)
    message = str(err.value)
    assert "3 consecutive non-finite" in message and str(ckpt) in message and "--resume" in message
    assert [s["n"] for s in steps] == [1, 2, 3, 4, 5, 6]
    last_good = steps[3]["checkpoint_before"]  # written after step 3, the last finite one
    assert last_good is not None and ckpt.read_bytes() == last_good  # not rewritten during the NaN run
    state = _assert_intact(ckpt)
    assert state["global_step"] == 3 and not state["finished"]


def test_resume_refuses_a_checkpoint_that_is_not_one(small, tmp_path) -> None:
    rec = ColdStartRecommender(TINY | {"train": TINY["train"] | {"epochs": 1}}).fit_dataset(small)
    rec.save(tmp_path / "model")
    ckpt = tmp_path / "ckpt.safetensors"
    ckpt.write_bytes((tmp_path / "model" / "model.safetensors").read_bytes())  # a model, not a checkpoint
    with pytest.raises(ModelFileError, match="not a recsys training checkpoint"):
        ColdStartRecommender(TINY).fit_dataset(small, checkpoint=ckpt, resume=True)
    other = ColdStartRecommender(TINY | {"model": TINY["model"] | {"hidden": [16]}})
    other.fit_dataset(small, checkpoint=tmp_path / "other.safetensors")
    with pytest.raises(ModelFileError, match="does not match"):
        ColdStartRecommender(TINY).fit_dataset(small, checkpoint=tmp_path / "other.safetensors", resume=True)


@pytest.mark.parametrize("interval", [0.0, 3600.0])
def test_mid_epoch_checkpoints_keep_the_interval_apart_and_every_epoch_end_writes_one(
    small, monkeypatch, tmp_path, interval
) -> None:
    """``train.checkpoint_interval_s``: on a large log ``checkpoint_every`` steps pass in seconds and
    each checkpoint writes the whole model and optimiser state; the interval bounds how often one is
    written within an epoch, while every epoch's end (and the end of training) still writes one."""
    written: list[int] = []
    save = MetaTrainer.save_checkpoint

    def recording(self) -> None:
        written.append(self.state.global_step)
        save(self)

    monkeypatch.setattr(MetaTrainer, "save_checkpoint", recording)
    cfg = TINY | {"train": TINY["train"] | {"checkpoint_interval_s": interval}}
    rec = ColdStartRecommender(cfg).fit_dataset(small, checkpoint=tmp_path / "ckpt.safetensors")
    epochs = len(rec.history)
    steps = written[-1]  # the last write is the end of training, after the last step
    assert epochs == 2 and steps > 2 * epochs
    if interval:
        assert len(written) == epochs + 1  # each epoch's end and the end of training
    else:  # checkpoint_every = 1: every step, plus each epoch's end and the end of training
        assert len(written) == steps + epochs + 1
