"""Meta-training throughput (tasks/s), side by side in one process on the same batches:

(a) our trainer step: one EmbeddingBag call per side, the inner loop vmapped over users;
(b) the same math with a Python loop over users;
(c) the MeLU reference's approach, re-written for this benchmark: dense multi-hot inputs multiplied
    by weight matrices, a per-user loop, fast weights swapped in and out with ``load_state_dict``.

Also (2) the meta overhead: one meta-step against (local steps + 1) forward-backward passes of the
plain model over the same rows.

Usage: ``python -m benchmarks.meta_throughput [--dataset melu-ml1m] [--batches 6] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import copy
import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.common import PeakRSS, find_data_root, header, median, time_interleaved
from recsys.config import MetaConfig, ModelConfig
from recsys.data.tasks import UserLog, iterate_batches, sample_tasks
from recsys.features.space import FeatureSpace
from recsys.meta.batches import build_batch
from recsys.meta.maml import MetaLearner, masked_mean
from recsys.models.network import ColdStartNet

log = logging.getLogger(__name__)


def load(name: str, synthetic_users: int = 0, synthetic_items: int = 0):
    if synthetic_users:
        from benchmarks.common import fast_synthetic

        return fast_synthetic(synthetic_users, synthetic_items)
    from recsys.data import load_dataset

    root = find_data_root(name)
    if root is not None:
        try:
            return load_dataset(name, data_root=root)
        except Exception as exc:  # fall back to synthetic data of a similar shape
            log.warning("%s unavailable (%s); using synthetic data", name, exc)
    from benchmarks.common import fast_synthetic

    return fast_synthetic(6040, 3706, per_user=165)


def setup(ds, batch_size: int, n_batches: int, steps: int, support: tuple[int, int], seed: int = 0):
    inter = ds.interactions
    if "state" in inter.columns:
        inter = inter.filter(inter["state"] == "warm_state")
    space = FeatureSpace.fit_dataset(ds, inter, use_item_id=False, rating_scale=ds.rating_scale)
    ulog = UserLog.from_frame(inter, space.items)
    users = np.nonzero(ulog.counts >= 13)[0]
    rng = np.random.default_rng(seed)
    tasks = sample_tasks(ulog, users, rng, support_size=support, query_size=10)
    subsets = list(iterate_batches(tasks, batch_size, rng))[:n_batches]
    batches = [build_batch(ulog, space, s) for s in subsets]
    torch.manual_seed(seed)
    net = ColdStartNet.for_space(
        ModelConfig(head="melu", use_item_id=False), space, rating_mean=3.6, n_items=0
    )
    learner = MetaLearner(
        net, MetaConfig(inner_steps=steps, inner_lr=5e-3, first_order=False, rank_weight=0.0)
    )
    return space, ulog, subsets, batches, learner


# ---- (c) the MeLU reference's approach -------------------------------------------------------------
class DenseMeLU(nn.Module):
    """MeLU's user_preference_estimator: categorical fields by nn.Embedding, multi-valued fields as dense
    multi-hot vectors times a bias-free Linear (divided by the number of hot entries)."""

    def __init__(self, item_fields, user_fields, dim: int = 32, hidden: int = 64):
        super().__init__()
        self.item_fields, self.user_fields = item_fields, user_fields
        self.embs = nn.ModuleDict()
        for name, kind, size in item_fields + user_fields:
            self.embs[name] = nn.Linear(size, dim, bias=False) if kind == "multi" else nn.Embedding(size, dim)
        n_in = dim * (len(item_fields) + len(user_fields))
        self.fc1, self.fc2, self.linear_out = (
            nn.Linear(n_in, hidden),
            nn.Linear(hidden, hidden),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for name, kind, _ in self.item_fields + self.user_fields:
            v = x[name]
            parts.append(
                self.embs[name](v) / v.sum(1, keepdim=True).clamp_min(1)
                if kind == "multi"
                else self.embs[name](v)
            )
        h = torch.relu(self.fc1(torch.cat(parts, 1)))
        return self.linear_out(torch.relu(self.fc2(h)))


def dense_tasks(space: FeatureSpace, ulog: UserLog, subsets):
    """Per task, dense inputs as MeLU's pickles hold them (built before timing, as MeLU loads them)."""
    ie, ue = space.item_encoder, space.user_encoder
    item_fields = [
        (f.name, "multi" if f.spec.kind.value == "multi" else "cat", f.size) for f in ie.token_fields
    ]
    user_fields = [
        (f.name, "multi" if f.spec.kind.value == "multi" else "cat", f.size) for f in ue.token_fields
    ]

    def encode(table, fields, offsets_of_field, rows):
        g = table.gather(rows)
        F_ = table.n_token_fields
        out = {}
        for j, (name, kind, size) in enumerate(fields):
            if kind == "multi":
                m = torch.zeros(len(rows), size)
                for r in range(len(rows)):
                    a, b = g.offsets[r * F_ + j], g.offsets[r * F_ + j + 1]
                    m[r, g.indices[a:b] - offsets_of_field[j]] = 1.0
                out[name] = m
            else:
                out[name] = torch.from_numpy(
                    g.indices[g.offsets[np.arange(len(rows)) * F_ + j]] - offsets_of_field[j]
                )
        return out

    out = []
    for sub in subsets:
        batch_tasks = []
        for t in range(len(sub)):
            s = sub.support[t][sub.support[t] >= 0]
            q = sub.query[t][sub.query[t] >= 0]
            urow = space.user_rows(ulog.user_ids.gather([sub.users[t]]))
            rows = {}
            for key, pos in (("s", s), ("q", q)):
                x = encode(space.item_table, item_fields, ie.field_offsets, ulog.items[pos])
                u = encode(space.user_table, user_fields, ue.field_offsets, np.repeat(urow, len(pos)))
                rows[key] = (x | u, torch.from_numpy(ulog.ratings[pos]))
            batch_tasks.append(rows)
        out.append(batch_tasks)
    return item_fields, user_fields, out


class MeLUReference:
    """MeLU's MAML loop: per user, local updates through load_state_dict'ed fast weights."""

    def __init__(self, model: DenseMeLU, steps: int, local_lr: float = 5e-3):
        self.model, self.steps, self.local_lr = model, steps, local_lr
        self.keep_weight = copy.deepcopy(model.state_dict())
        self.weight_name = list(self.keep_weight.keys())
        self.local_targets = [
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias",
            "linear_out.weight",
            "linear_out.bias",
        ]
        self.optim = torch.optim.Adam(model.parameters(), lr=5e-5)

    def forward(self, sx, sy, qx):
        fast = {}
        for idx in range(self.steps):
            if idx > 0:
                self.model.load_state_dict(fast)
            weights = list(self.model.state_dict().values())
            loss = F.mse_loss(self.model(sx), sy.view(-1, 1))
            self.model.zero_grad()
            grads = torch.autograd.grad(loss, list(self.model.parameters()), create_graph=True)
            for i, name in enumerate(self.weight_name):
                fast[name] = (
                    weights[i] - self.local_lr * grads[i] if name in self.local_targets else weights[i]
                )
        self.model.load_state_dict(fast)
        return self.model(qx)

    def global_update(self, tasks):
        # MeLU stacks the query losses and calls backward once; current PyTorch refuses that after the
        # in-place load_state_dict swaps, so each task's loss is back-propagated before the weights are
        # restored (same arithmetic, same per-user loop, same swaps).
        self.optim.zero_grad()
        for t in tasks:
            loss = F.mse_loss(self.forward(t["s"][0], t["s"][1], t["q"][0]), t["q"][1].view(-1, 1)) / len(
                tasks
            )
            loss.backward()
            self.model.load_state_dict(self.keep_weight)
        self.optim.step()
        self.keep_weight = copy.deepcopy(self.model.state_dict())


def profile_vectorised(run) -> None:
    """Top operators of path (a) by self time: where a vectorised meta-step spends it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print("  profile of (a), operators by self CPU time:")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
        print(
            f"    {e.key:<44} {e.self_cpu_time_total / 1000:8.1f} ms  {100 * e.self_cpu_time_total / total:5.1f}%"
        )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="melu-ml1m")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--no-reference", action="store_true", help="skip (c), the slow MeLU-style reference")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--synthetic-users", type=int, default=0, help="use a fast synthetic log of this many users"
    )
    p.add_argument("--synthetic-items", type=int, default=100_000)
    p.add_argument(
        "--loop-tasks", type=int, default=0, help="time (b) and (c) on the first N tasks of each batch"
    )
    p.add_argument(
        "--profile", action="store_true", help="print where (a)'s time goes (torch.profiler, top operators)"
    )
    args = p.parse_args(argv)

    ds = load(args.dataset, args.synthetic_users, args.synthetic_items)
    space, ulog, subsets, batches, learner = setup(ds, args.batch_size, args.batches, args.steps, (3, 90))
    device = torch.device(args.device)
    learner.to(device)
    batches = [b.to(device) for b in batches]
    loop_subsets, loop_batches = subsets, batches
    if args.loop_tasks:  # the slow paths on fewer tasks; throughput is per task either way
        loop_subsets = [s.take(np.arange(min(args.loop_tasks, len(s)))) for s in subsets]
        loop_batches = [build_batch(ulog, space, s).to(device) for s in loop_subsets]
    header(
        f"1. meta-training throughput: {ds.name}, meta-batch {args.batch_size}, {args.steps} local steps, "
        f"second-order, {device}"
    )
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; support sizes 3..90, query 10")
    opt = torch.optim.Adam(learner.parameters(), lr=1e-3)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(loop: bool):
        def run():
            for b in loop_batches if loop else batches:
                loss = learner.meta_loss(b, loop=loop)
                opt.zero_grad()
                loss.backward()
                opt.step()
            sync()

        return run

    fns = {"(a) vectorised": step(False), "(b) per-user loop": step(True)}
    ref = None
    if not args.no_reference:
        item_fields, user_fields, dense = dense_tasks(space, ulog, loop_subsets)
        dense = [
            [
                {k: ({f: t.to(device) for f, t in x.items()}, y.to(device)) for k, (x, y) in task.items()}
                for task in b
            ]
            for b in dense
        ]
        torch.manual_seed(0)
        ref = MeLUReference(DenseMeLU(item_fields, user_fields).to(device), args.steps)

        def reference() -> None:
            for tasks in dense:
                ref.global_update(tasks)
            sync()

        fns["(c) MeLU reference"] = reference
    mems = {}
    for name, fn in fns.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as m:
            fn()
        mems[name] = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else m.delta_mb
    times = time_interleaved(fns, args.repeats, warmup=0)  # the memory pass above warmed every path
    sizes = {k: sum(len(s) for s in (subsets if k.startswith("(a)") else loop_subsets)) for k in times}
    rates = {k: sizes[k] / median(v) for k, v in times.items()}
    unit = "GPU MB" if device.type == "cuda" else "MB"
    for k, v in times.items():
        per = sizes[k] // len(batches)
        print(
            f"  {k:<22} {rates[k]:9.1f} tasks/s   median {median(v) / len(batches) * 1000:8.1f} ms per "
            f"{per} tasks   peak {'+' if device.type != 'cuda' else ''}{mems[k]:.0f} {unit}"
        )
    a = rates["(a) vectorised"]
    print(f"  ratio (a)/(b) = {a / rates['(b) per-user loop']:.1f}x (target >= 5x)")
    if ref is not None:
        print(f"  ratio (a)/(c) = {a / rates['(c) MeLU reference']:.1f}x (target >= 30x)")
    if args.profile:
        profile_vectorised(step(False))

    # ---- 2. meta overhead ----------------------------------------------------------------------
    header("2. meta overhead: one meta-step vs (local steps + 1) plain forward-backward passes")
    params = dict(learner.head.named_parameters())

    def plain(rows: str):
        def run():
            for b in batches:
                tt = learner.task_tensors(b)
                side, y, m = (
                    (tt.support, tt.support_y, tt.support_m)
                    if rows == "s"
                    else (tt.query, tt.query_y, tt.query_m)
                )
                pred = learner.head.predict(params, tt.user, side)
                loss = masked_mean((pred - y) ** 2, m).mean()
                opt.zero_grad()
                loss.backward()
            sync()

        return run

    t = time_interleaved({"meta": step(False), "s": plain("s"), "q": plain("q")}, args.repeats)
    ideal = args.steps * median(t["s"]) + median(t["q"])
    multiple = median(t["meta"]) / ideal
    nb = len(batches)
    print(
        f"  meta-step {median(t['meta']) / nb * 1000:.1f} ms, plain forward-backward: support "
        f"{median(t['s']) / nb * 1000:.1f} ms, query {median(t['q']) / nb * 1000:.1f} ms"
    )
    print(
        f"  measured multiple of the ideal ({args.steps} x support + 1 x query) = {multiple:.2f}x (target <= 2x)"
    )
    return {"rates": rates, "overhead": multiple}


if __name__ == "__main__":
    main()
