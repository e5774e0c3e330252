"""Meta-learner means and its paired difference to the best baseline per cell, for several reports side by side.
Usage (from this folder): python compare.py nested-auto nested-temporal"""
import json, sys
reps = {n: json.load(open(f"{n}/report.json")) for n in sys.argv[1:]}
def ml(r):
    out = {}
    for row in r["results"]:
        if row["method"] == "meta-learner" and row["scenario"] == "new_users":
            for m in ("mae", "recall@20", "ndcg@10"):
                if m in row: out[(row["protocol"], int(row["k"]), m)] = row[m]["mean"]
    return out
def best(r):
    b = {}
    for p in r["paired"]:
        if p["metric"] in ("recall@20", "ndcg@10", "mae"):
            key = (p["protocol"], int(p["k"]), p["metric"])
            worse = p["mean"] if p["metric"] != "mae" else -p["mean"]
            if key not in b or worse < b[key][0]: b[key] = (worse, p)
    return {k: f"{v[1]['mean']:+.3f} [{v[1]['low']:+.3f},{v[1]['high']:+.3f}] {v[1]['baseline']}" for k, v in b.items()}
ms = {n: ml(r) for n, r in reps.items()}; bs = {n: best(r) for n, r in reps.items()}
for key in sorted(set.intersection(*(set(m) for m in ms.values()))):
    print(*key, " | ".join(f"{n}: {ms[n][key]:.4f} ({bs[n].get(key,'')})" for n in reps))
for n, r in reps.items():
    for s, v in r["model_choices"].items(): print(n, s, v.get("trend prior"), "|", v.get("classical item-item path"), "|", v.get("rating combiner"))
