"""Print a report's paired differences: each ablation row minus its reference, and the meta-learner
minus the best baseline per cell (Recall@20, nDCG@10, MAE). Usage: python paired.py report.json"""

import json, sys

r = json.load(open(sys.argv[1]))
for a in r["paired_ablations"]:
    if a["metric"] in ("recall@20", "ndcg@10"):
        print(
            "ABL",
            a["protocol"],
            a["scenario"],
            a["k"],
            a["metric"],
            f"{a['mean']:+.4f} [{a['low']:+.4f},{a['high']:+.4f}]",
            a["variant"],
        )
best = {}
for p in r["paired"]:
    if p["metric"] in ("recall@20", "ndcg@10", "mae"):
        key = (p["protocol"], p["scenario"], p["k"], p["metric"])
        better = p["mean"] if p["metric"] != "mae" else -p["mean"]
        if key not in best or better < best[key][0]:
            best[key] = (better, p)
for key, (b, p) in sorted(best.items()):
    print("VS", *key, p["baseline"], f"{p['mean']:+.4f} [{p['low']:+.4f},{p['high']:+.4f}]")
