import hashlib, sys, torch, numpy as np
from recsys import training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.data.tasks import iterate_batches, sample_tasks
from recsys.meta.batches import build_batch
from recsys.utils.seeds import Seeds, VALIDATION_USERS

ds = load_dataset("ml-100k")
config = RecommenderConfig.from_dict({"train": {"epochs": 1}})
seeds = Seeds(config.train.seed)
data = training.prepare_log(ds.interactions, ds.users, ds.items, config)
train, val = training.split_validation(data.interactions, None, config.train, seeds.rng(VALIDATION_USERS))
space = training.fit_space(train, data, config.model)
train_log, val_log = training.user_logs(train, val, space)
info = training.log_info(train_log, val_log)
learner = training.build_learner(data.config, space, info["rating_mean"])
info |= training.prepare_head(learner, space, train_log, val_log, config, seeds, rating_mean=info["rating_mean"])
cfg = config.train
rng = np.random.default_rng([cfg.seed, 0])
users = np.arange(train_log.n_users)
tasks = sample_tasks(train_log, users, rng, support_size=(cfg.support_min, cfg.support_max), query_size=cfg.query_size,
    support_order=cfg.support_order, query_order=cfg.query_order, log_uniform=cfg.support_distribution == "log-uniform")
sub = next(iter(iterate_batches(tasks, cfg.meta_batch_size, rng)))
batch = build_batch(train_log, space, sub, rank_positives=True, rank_threshold=learner.cfg.rank_threshold, folds=True)
t = space.item_table
learner.set_catalogue(torch.from_numpy(t.indices), torch.from_numpy(t.offsets), torch.from_numpy(t.dense))
import os
if os.environ.get("DET"): torch.use_deterministic_algorithms(True, warn_only=True)
learner.train()
def grads():
    for p in learner.parameters(): p.grad = None
    loss = learner(batch)
    loss.backward()
    return float(loss), {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone() for n, p in learner.named_parameters() if p.grad is not None}
l1, g1 = grads()
l2, g2 = grads()
print("loss", l1.hex(), l2.hex(), "same" if l1 == l2 else "DIFF")
for n in g1:
    same = torch.equal(g1[n], g2[n])
    h = hashlib.sha1(g1[n].numpy().tobytes()).hexdigest()[:10]
    print(("  " if same else "**"), n, h, "" if same else float((g1[n]-g2[n]).abs().max()))
