"""Train ML-100k (or $DATASET) under $PROTOCOL (default temporal), seed $SEED (default 0), as `recsys
evaluate` does; write the model's post-training choices (its info) to OUT.json and, with $STATE set, its
weights to that file.

usage: RECSYS_DATA_DIR=... python choices.py OUT.json [dotted.key=value ...]
"""

import json
import os
import sys
from pathlib import Path

import torch

from recsys.config import RecommenderConfig
from recsys.data.dataset import load_dataset
from recsys.workflows import train_model

over = {k: json.loads(v) for k, v in (a.split("=", 1) for a in sys.argv[2:])}
config = RecommenderConfig().override(**over) if over else RecommenderConfig()
ds = load_dataset(os.environ.get("DATASET", "ml-100k"))
protocol, seed = os.environ.get("PROTOCOL", "temporal"), int(os.environ.get("SEED", "0"))
rec, _ = train_model(ds, config, protocol=protocol, seed=seed)
Path(sys.argv[1]).write_text(json.dumps(rec.info, default=str, indent=1))
if os.environ.get("STATE"):
    torch.save({k: v.detach().clone() for k, v in rec.learner.state_dict().items()}, os.environ["STATE"])
