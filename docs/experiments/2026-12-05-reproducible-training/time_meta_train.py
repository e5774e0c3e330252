import os, time, torch, numpy as np
if os.environ.get("DET"): torch.use_deterministic_algorithms(True, warn_only=True)
from recsys import training
from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.utils.seeds import Seeds, VALIDATION_USERS
ds = load_dataset("ml-100k")
config = RecommenderConfig.from_dict({"train": {"epochs": 4}})
seeds = Seeds(config.train.seed)
data = training.prepare_log(ds.interactions, ds.users, ds.items, config)
train, val = training.split_validation(data.interactions, None, config.train, seeds.rng(VALIDATION_USERS))
space = training.fit_space(train, data, config.model)
train_log, val_log = training.user_logs(train, val, space)
info = training.log_info(train_log, val_log)
learner = training.build_learner(data.config, space, info["rating_mean"])
info |= training.prepare_head(learner, space, train_log, val_log, config, seeds, rating_mean=info["rating_mean"])
tasks = training.validation_tasks_of(val_log, config.train, seeds)
t = time.perf_counter()
training.meta_train(learner, space, config, info, train_log, val_log, tasks)
print("meta_train 4 epochs", round(time.perf_counter() - t, 2), "s", "det" if os.environ.get("DET") else "default")
