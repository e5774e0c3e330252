"""The outer loop: Adam over all meta-parameters, meta-batches of users, validation, early stopping,
atomic resumable checkpoints.

Determinism: the tasks of epoch ``e`` are drawn from ``numpy.random.default_rng([seed, e])`` and the
meta-batches from the same generator, so a run resumed at any step replays exactly the batches an
uninterrupted run would see. A non-finite loss or gradient skips the step (the fused Adam kernel is
told through ``found_inf``, without a host sync on GPU); too many in a row stop training with a clear
error, and the last good checkpoint stays on disk.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.config import TrainConfig
from recsys.data.tasks import TaskSet, UserLog, iterate_batches, sample_tasks
from recsys.errors import ModelFileError, TrainingError
from recsys.features.space import FeatureSpace
from recsys.meta.batches import build_batch
from recsys.meta.maml import MetaLearner
from recsys.meta.validation import evaluate_rating_tasks, validation_tasks
from recsys.utils.checkpoint import flatten_optimizer, load_tensors, save_tensors, unflatten_optimizer
from recsys.utils.collectives import rank_world
from recsys.utils.io import remove_stale_temps
from recsys.utils.progress import progress
from recsys.utils.seeds import VALIDATION_TASKS, Seeds

log = logging.getLogger(__name__)

EpochCallback = Callable[[int, dict[str, float]], None]
NEGATIVES_STREAM = 7  # the last key of the sampled-negatives generator (apart from the tasks' stream)


@dataclass
class TrainState:
    """Where training stands; saved in every checkpoint."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: float = math.inf
    best_epoch: int = -1
    best_rank_metric: float = math.inf
    best_rank_epoch: int = -1
    bad_epochs: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    finished: bool = False
    running_loss: float = 0.0
    running_count: int = 0
    running_skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def wrap_distributed(learner: MetaLearner, device: torch.device) -> torch.nn.Module:
    """``learner`` in DistributedDataParallel, its buffers copied from rank 0 once, never per step:
    they (item-item neighbours and their out-of-fold copies, item offsets, path weights) are fixed
    before meta-training. DDP's default broadcast before every forward moved ~100 MB a step on
    Gowalla's 41k items (a 2-process epoch: 227.8 s with it, 68.6 s without). Older torch's
    ``broadcast_buffers=False`` also skips the copy at wrapping, so it is made here."""
    ddp = torch.nn.parallel.DistributedDataParallel
    kwargs: dict[str, Any] = {
        "device_ids": [device.index] if device.type == "cuda" else None,
        "find_unused_parameters": True,
    }
    if "forward_sync_buffers" in inspect.signature(ddp.__init__).parameters:
        return ddp(learner, forward_sync_buffers=False, **kwargs)
    for buffer in learner.buffers():
        torch.distributed.broadcast(buffer, src=0)
    return ddp(learner, broadcast_buffers=False, **kwargs)


class MetaTrainer:
    def __init__(
        self,
        learner: MetaLearner,
        space: FeatureSpace,
        cfg: TrainConfig,
        *,
        checkpoint: str | Path | None = None,
        checkpoint_meta: dict[str, Any] | None = None,
        checkpoint_tensors: dict[str, torch.Tensor] | None = None,
        on_epoch_end: list[EpochCallback] | None = None,
    ) -> None:
        self.learner = learner
        self.space = space
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.checkpoint_meta = checkpoint_meta or {}
        self._last_checkpoint = time.monotonic()  # mid-epoch ones: train.checkpoint_interval_s apart
        self.checkpoint_tensors = checkpoint_tensors or {}
        self.on_epoch_end = on_epoch_end or []
        self.state = TrainState()
        self.best_weights: dict[str, torch.Tensor] | None = None
        learner.to(self.device)
        self.rank, self.world = rank_world()
        # DistributedDataParallel (gloo on CPU, NCCL on GPU) when launched with torchrun; the plain
        # learner otherwise. Every rank draws the same global meta-batches and takes its share.
        self.model: torch.nn.Module = wrap_distributed(learner, self.device) if self.world > 1 else learner
        t = space.item_table
        learner.set_catalogue(
            torch.from_numpy(t.indices), torch.from_numpy(t.offsets), torch.from_numpy(t.dense)
        )
        self.rank_loss = learner.cfg.rank_weight > 0
        sparse = learner.net.sparse_parameters()
        sparse_ids = {id(p) for p in sparse}
        self.dense_params = [p for p in learner.parameters() if id(p) not in sparse_ids]
        fused = self.device.type in ("cpu", "cuda")
        self.optimizer = torch.optim.Adam(
            self.dense_params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused
        )
        self.sparse_optimizer = torch.optim.SparseAdam(sparse, lr=cfg.lr) if sparse else None
        self.clip_groups = self._clip_groups()
        # exponential moving average of the meta-parameters (train.weight_average)
        self.averaged = [(n, p) for n, p in learner.named_parameters() if p.is_floating_point()]
        self.average: list[torch.Tensor] | None = (
            [p.detach().clone() for _, p in self.averaged] if cfg.weight_average > 0 else None
        )

    def _clip_groups(self) -> list[list[torch.nn.Parameter]]:
        """Parameter groups whose gradient norms are clipped separately (one group: global)."""
        groups = self.learner.net.param_groups() if self.cfg.grad_clip_scope == "per-path" else None
        if groups is None:
            return [self.dense_params]
        group_of = {f"net.{n}": g for g, names in groups.items() for n in names}
        name_of = {id(p): n for n, p in self.learner.named_parameters()}
        split: dict[str, list[torch.nn.Parameter]] = {"rating": [], "ranking": [], "shared": []}
        for p in self.dense_params:
            split[group_of.get(name_of[id(p)], "shared")].append(p)
        return [g for g in split.values() if g]

    def _clip_gradients(self) -> torch.Tensor:
        """Clip the dense gradients (``train.grad_clip``, per ``train.grad_clip_scope``); returns a
        norm that is non-finite when any gradient is."""
        if self.cfg.grad_clip <= 0:
            return torch.nn.utils.get_total_norm([p.grad for p in self.dense_params if p.grad is not None])
        norms = [torch.nn.utils.clip_grad_norm_(g, self.cfg.grad_clip) for g in self.clip_groups]
        return norms[0] if len(norms) == 1 else torch.stack(norms).sum()

    def _update_average(self) -> None:
        if self.average is None:
            return
        t = self.state.global_step
        decay = min(self.cfg.weight_average, (1 + t) / (10 + t))
        with torch.no_grad():
            for avg, (_, p) in zip(self.average, self.averaged, strict=True):
                avg.lerp_(p.detach(), 1.0 - decay)

    def evaluated_state(self) -> dict[str, torch.Tensor]:
        """The weights that are validated and kept: the live ones, or their moving average."""
        state = self.learner.state_dict()
        if self.average is not None:
            state.update({n: a for (n, _), a in zip(self.averaged, self.average, strict=True)})
        return state

    @contextmanager
    def _averaged_weights(self) -> Iterator[None]:
        """Temporarily put the averaged weights in the model (no-op without averaging)."""
        if self.average is None:
            yield
            return
        live = [p.detach().clone() for _, p in self.averaged]
        with torch.no_grad():
            for (_, p), avg in zip(self.averaged, self.average, strict=True):
                p.copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for (_, p), value in zip(self.averaged, live, strict=True):
                    p.copy_(value)

    # ---- checkpoints ---------------------------------------------------------------------------
    def save_checkpoint(self) -> None:
        if self.checkpoint is None or self.rank != 0:  # rank 0 writes for everyone
            return
        tensors = {f"model.{k}": v for k, v in self.learner.state_dict().items()}
        opt_tensors, opt_meta = flatten_optimizer(self.optimizer.state_dict(), "optim")
        tensors.update(opt_tensors)
        sparse_meta = None
        if self.sparse_optimizer is not None:
            sp_tensors, sparse_meta = flatten_optimizer(self.sparse_optimizer.state_dict(), "sparse_optim")
            tensors.update(sp_tensors)
        if self.best_weights is not None:
            tensors.update({f"best.{k}": v for k, v in self.best_weights.items()})
        if self.average is not None:
            tensors.update({f"average.{n}": a for (n, _), a in zip(self.averaged, self.average, strict=True)})
        tensors["rng.torch"] = torch.get_rng_state()
        if torch.cuda.is_available() and self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        tensors.update(self.checkpoint_tensors)
        meta = {
            "kind": "recsys-checkpoint",
            "state": self.state.to_dict(),
            "optimizer": opt_meta,
            "sparse_optimizer": sparse_meta,
        } | self.checkpoint_meta
        save_tensors(self.checkpoint, tensors, meta)
        self._last_checkpoint = time.monotonic()

    def load_checkpoint(self, path: str | Path) -> None:
        tensors, meta = load_tensors(path)  # safetensors only: a pickle or a torn file is a ModelFileError
        if not isinstance(meta, dict) or meta.get("kind") != "recsys-checkpoint":
            raise ModelFileError(
                f"{path}: not a recsys training checkpoint; remove it or train without --resume"
            )
        try:
            self._restore(tensors, meta)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ModelFileError(
                f"{path}: checkpoint does not match this model and data ({type(exc).__name__}: {first}); "
                "remove it or train without --resume"
            ) from None

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        self.learner.load_state_dict(model_state)
        self.learner.to(self.device)
        opt_state = unflatten_optimizer(tensors, meta["optimizer"], "optim")
        self.optimizer.load_state_dict(opt_state)
        if self.sparse_optimizer is not None and meta.get("sparse_optimizer"):
            self.sparse_optimizer.load_state_dict(
                unflatten_optimizer(tensors, meta["sparse_optimizer"], "sparse_optim")
            )
        best = {k[len("best.") :]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best_weights = best or None
        if self.average is not None:  # a checkpoint written without averaging starts it here
            self.average = [
                tensors.get(f"average.{n}", p.detach()).to(self.device).clone() for n, p in self.averaged
            ]
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.state = TrainState(**meta["state"])

    # ---- training ------------------------------------------------------------------------------
    def _negatives(self, epoch: int, step: int) -> dict[str, Any]:
        """The sampled softmax's negatives of one batch (none for a catalogue of at most
        ``meta.rank_negatives`` items): drawn from a generator keyed by (seed, epoch, step, rank), so a
        resumed run draws the same ones."""
        n_items = self.space.n_items
        m = self.learner.sampled_negatives(n_items) if self.rank_loss else 0
        if not m:
            return {}
        rng = np.random.default_rng([self.cfg.seed, epoch, step, self.rank, NEGATIVES_STREAM])
        return {"negatives": rng.choice(n_items, size=m, replace=False), "n_catalogue": n_items}

    def _step(self, batch, weight: float = 1.0) -> torch.Tensor:
        """One meta-step. ``weight`` scales this process's share of a distributed global batch."""
        self.learner.train()
        loss = self.model(batch)
        if weight != 1.0:
            loss = loss * weight
        self.optimizer.zero_grad(set_to_none=True)
        if self.sparse_optimizer is not None:
            self.sparse_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = self._clip_gradients()
        found_inf = (~torch.isfinite(norm) | ~torch.isfinite(loss.detach())).float()
        # a skipped step reports a NaN loss (also when only the gradient was non-finite), so fit()
        # counts it as skipped; no host sync here
        reported = torch.where(found_inf > 0, torch.full_like(loss.detach(), math.nan), loss.detach())
        if self.sparse_optimizer is not None:
            # SparseAdam cannot skip on device: check on the host (one sync per step)
            if bool(found_inf.item()):
                return reported
            self.sparse_optimizer.step()
        self.optimizer.found_inf = found_inf  # fused Adam skips the whole update when set
        self.optimizer.grad_scale = None
        self.optimizer.step()
        self._update_average()
        return reported

    def fit(
        self,
        train_log: UserLog,
        val_log: UserLog | None = None,
        *,
        resume_from: str | Path | None = None,
        val_tasks: TaskSet | None = None,
    ):
        """Meta-train, validating on ``val_tasks`` of ``val_log`` after every epoch (default: the fixed
        validation tasks of the ``validation-tasks`` stream of the training seed).

        Long on purpose: the outer loop keeps the order of its state updates (batches, skipped steps,
        checkpoints, best epochs, early stopping) in one place, because exact resume after a crash depends on
        that order."""
        cfg = self.cfg
        if self.checkpoint is not None and self.rank == 0:
            remove_stale_temps(self.checkpoint)  # left by a run killed while writing a checkpoint
        if resume_from is not None and Path(resume_from).exists():
            self.load_checkpoint(resume_from)
            log.info("resumed at epoch %d step %d", self.state.epoch, self.state.step_in_epoch)
        train_users = np.nonzero(train_log.counts >= cfg.min_user_ratings)[0]
        if len(train_users) == 0:
            raise TrainingError(f"no training user has at least {cfg.min_user_ratings} ratings")
        if val_log is None or not val_log.n_users:
            val_tasks = None
        elif val_tasks is None:  # an empty set (no user can give a task) trains as without validation
            val_tasks = validation_tasks(val_log, cfg, Seeds(cfg.seed).rng(VALIDATION_TASKS)) or None
        consecutive_bad = 0
        n_epochs, n_tasks = cfg.planned_epochs(len(train_users)), len(train_users)
        if n_epochs < cfg.epochs:
            log.info("training budget: %d epochs of %d tasks (train.max_tasks)", n_epochs, n_tasks)
        while self.state.epoch < n_epochs and not self.state.finished:
            epoch = self.state.epoch
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, epoch])
            tasks = sample_tasks(
                train_log,
                train_users,
                rng,
                support_size=(cfg.support_min, cfg.support_max),
                query_size=cfg.query_size,
                support_order=cfg.support_order,
                query_order=cfg.query_order,
                log_uniform=cfg.support_distribution == "log-uniform",
            )
            batches = list(iterate_batches(tasks, cfg.meta_batch_size, rng))
            if self.world > 1:  # every rank needs at least one task of every batch
                batches = [b for b in batches if len(b) >= self.world]
            skip = self.state.step_in_epoch
            st = self.state
            if skip == 0:
                st.running_loss, st.running_count, st.running_skipped = 0.0, 0, 0
            bar = progress(
                total=len(batches), initial=skip, desc=f"epoch {epoch + 1}/{n_epochs}", unit="batch"
            )
            for i, sub in enumerate(batches):
                if i < skip:
                    continue
                share = 1.0
                if self.world > 1:  # this rank's tasks; loss weighted so gradients average to the global mean
                    n_global = len(sub)
                    sub = sub.take(np.arange(self.rank, n_global, self.world))
                    share = len(sub) * self.world / n_global
                batch = build_batch(
                    train_log,
                    self.space,
                    sub,
                    rank_positives=self.rank_loss,
                    rank_threshold=self.learner.cfg.rank_threshold,
                    folds=True,
                    **self._negatives(epoch, i),
                )
                if self.device.type == "cuda":
                    batch = batch.pin_memory().to(self.device, non_blocking=True)
                loss = self._step(batch, share)
                self.state.step_in_epoch = i + 1
                self.state.global_step += 1
                value = float(loss)  # cheap on CPU; on GPU the progress read is the only sync
                if math.isfinite(value):
                    st.running_loss += value
                    st.running_count += 1
                    consecutive_bad = 0
                else:
                    st.running_skipped += 1
                    consecutive_bad += 1
                    log.warning("non-finite loss at epoch %d step %d: step skipped", epoch + 1, i + 1)
                    if consecutive_bad >= cfg.max_nonfinite_steps:
                        kept = self.checkpoint is not None and self.checkpoint.exists()
                        raise TrainingError(
                            f"{consecutive_bad} consecutive non-finite losses or gradients (epoch {epoch + 1}, "
                            f"step {i + 1}); training stopped"
                            + (
                                f", the last good checkpoint is kept at {self.checkpoint} (resume with --resume)"
                                if kept
                                else ""
                            )
                        )
                bar.update(1)
                bar.set_postfix(loss=f"{st.running_loss / max(st.running_count, 1):.4f}")
                if (
                    self.checkpoint
                    and cfg.checkpoint_every
                    and self.state.global_step % cfg.checkpoint_every == 0
                    and time.monotonic() - self._last_checkpoint >= cfg.checkpoint_interval_s
                    and consecutive_bad == 0  # during a run of skipped steps the last good one stays
                ):
                    self.save_checkpoint()
            bar.close()
            record: dict[str, float] = {
                "epoch": epoch + 1,
                "epochs_planned": n_epochs,
                "train_loss": st.running_loss / max(st.running_count, 1),
                "skipped_steps": st.running_skipped,
            }
            if val_tasks is not None:
                record.update({f"val_{k}": v for k, v in self._validate(val_log, val_tasks).items()})
            record["seconds"] = time.perf_counter() - t0
            self._after_epoch(record)
            for callback in self.on_epoch_end:
                callback(epoch + 1, record)
        if self.best_weights is not None:
            self.learner.load_state_dict(self.best_weights)
        elif self.average is not None:  # no validation: keep the averaged weights
            self.learner.load_state_dict(self.evaluated_state())
        self.state.finished = True
        self.save_checkpoint()
        return self.state

    def _validate(self, val_log: UserLog, tasks: TaskSet) -> dict[str, float]:
        with self._averaged_weights():
            return evaluate_rating_tasks(
                self.learner,
                self.space,
                val_log,
                tasks,
                device=self.device,
                catalogue=self.rank_loss,
                threshold=self.learner.cfg.rank_threshold,
            )

    def selection_value(self, record: dict[str, float]) -> float:
        """The validation figure to minimise (see ``TrainConfig.select_metric``)."""
        metric = self.cfg.select_metric
        if metric == "auto":
            if self.space.implicit:
                metric = "ndcg@10"
            elif self.rank_loss and self.learner.cfg.rating_weight > 0:
                metric = "mae-ndcg"
            else:
                metric = "mae"
        if "val_mae" not in record and "val_cat_ndcg@10" not in record:
            return record["train_loss"]
        if metric == "mae":
            return record["val_mae"]
        if metric == "recall@20":
            return -record["val_recall@20"]
        if metric == "ndcg@10":
            return -record["val_cat_ndcg@10"]
        return record["val_mae"] - record["val_cat_ndcg@10"]

    def _after_epoch(self, record: dict[str, float]) -> None:
        cfg = self.cfg
        st = self.state
        groups = (
            self.learner.net.param_groups() if self.rank_loss and self.learner.cfg.rating_weight > 0 else None
        )
        if groups is not None and "val_mae" in record and "val_cat_ndcg@10" in record:
            # independent rating and ranking paths: each keeps the epoch that validates best for it
            improved = False
            current = self.evaluated_state()
            if self.best_weights is None:
                self.best_weights = {k: v.detach().clone() for k, v in current.items()}
            for group, value, attr in (
                ("rating", record["val_mae"], "best_metric"),
                ("ranking", -record["val_cat_ndcg@10"], "best_rank_metric"),
            ):
                if value < getattr(st, attr) - 1e-6:
                    setattr(st, attr, value)
                    setattr(
                        st, "best_epoch" if group == "rating" else "best_rank_epoch", int(record["epoch"])
                    )
                    names = {f"net.{n}" for n in groups[group]}
                    for k in names:
                        self.best_weights[k] = current[k].detach().clone()
                    improved = True
            others = set(current) - {f"net.{n}" for g in groups.values() for n in g}
            if improved:  # shared state (buffers, meta-SGD rates) follows the latest improvement
                for k in others:
                    self.best_weights[k] = current[k].detach().clone()
            record["selection"] = record["val_mae"] - record["val_cat_ndcg@10"]
            st.bad_epochs = 0 if improved else st.bad_epochs + 1
        else:
            metric = self.selection_value(record)
            record["selection"] = metric
            if metric < st.best_metric - 1e-6:
                st.best_metric = metric
                st.best_epoch = int(record["epoch"])
                st.bad_epochs = 0
                self.best_weights = {k: v.detach().clone() for k, v in self.evaluated_state().items()}
            else:
                st.bad_epochs += 1
        st.history.append(record)
        st.epoch += 1
        st.step_in_epoch = 0
        if cfg.patience and st.bad_epochs >= cfg.patience:
            log.info("early stop after epoch %d (best epoch %d)", st.epoch, st.best_epoch)
            st.finished = True
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k.startswith("val_"))
        log.info(
            "epoch %d: loss %.4f %s (%.1fs)", record["epoch"], record["train_loss"], shown, record["seconds"]
        )
        self.save_checkpoint()
