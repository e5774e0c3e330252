"""Two processes, one ML-1M training: are the weights the same? (2026-12-05 evening)

Runs ``train_model`` on ML-1M (random protocol, seed 0, one epoch of meta-training) and writes a digest
(SHA-1 of the bytes, 10 hex digits) of every weight and buffer after step 5 (``prepare_head``: the ALS
start, the item-item blend, item offsets) and after meta-training, then stops before the post-training
choices. Run it twice and compare the two files::

    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-reproducible-training/ml1m_two_processes.py /tmp/det1.json
    RECSYS_DATA_DIR=/work/shared/data .venv/bin/python docs/experiments/2026-12-05-reproducible-training/ml1m_two_processes.py /tmp/det2.json

Result (2 CPU cores, about 2 min each): all 74 tensors equal at both points.
"""
import hashlib, json, sys
import torch
import recsys.training as T
import recsys.recommender as R
from recsys import post_training
from recsys.config import RecommenderConfig
from recsys.data import load_dataset
from recsys.workflows import train_model

class Stop(Exception): pass
out = {}
def digest(learner):
    return {k: hashlib.sha1(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:10] for k, v in learner.state_dict().items()}
orig_mt = T.meta_train
def mt(learner, *a, **k):
    out["after prepare_head"] = digest(learner)
    st = orig_mt(learner, *a, **k)
    out["after meta_train"] = digest(learner)
    return st
T.meta_train = mt
def stop(*a, **k):
    raise Stop
post_training.choose_after_training = stop
cfg = RecommenderConfig().replace(train={"epochs": 1})
try:
    train_model(load_dataset("ml-1m"), cfg, protocol="random", seed=0)
except Stop:
    pass
json.dump(out, open(sys.argv[1], "w"), indent=0)
print("done", len(out))
