"""The meta-learner's mean Recall@20 / nDCG@10 per protocol and K in several reports of the same
nested ML-100k command (same seeds, same users). Usage: python runs.py name=report.json ..."""

import json
import sys

runs = {}
for arg in sys.argv[1:]:
    name, path = arg.split("=", 1)
    rows = json.load(open(path))["results"]
    runs[name] = {(r["protocol"], int(r["k"])): r for r in rows if r["method"] == "meta-learner"}
keys = sorted(next(iter(runs.values())))
print("| protocol | K | metric | " + " | ".join(runs) + " |")
print("|---|---|---|" + "---|" * len(runs))
for protocol, k in keys:
    for metric in ("recall@20", "ndcg@10"):
        cells = [f"{runs[n][(protocol, k)][metric]['mean']:.4f}" for n in runs]
        print(f"| {protocol} | {k} | {metric} | " + " | ".join(cells) + " |")
