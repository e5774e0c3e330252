"""The meta-learner's ranking cells of several arms' reports side by side, with the mean over K of each.

usage: python arms.py NAME=REPORT_DIR ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

METRICS = ("recall@20", "ndcg@10")


def main(arms: list[str]) -> None:
    reports = {}
    for arm in arms:
        name, path = arm.split("=", 1)
        reports[name] = json.loads(Path(f"{path}/report.json").read_text())
    names = list(reports)
    print("| protocol | K | metric | " + " | ".join(names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    means: dict = {}
    first = reports[names[0]]
    keys = [(r["protocol"], r["k"]) for r in first["results"] if r["method"] == "meta-learner"]
    for protocol, k in keys:
        for m in METRICS:
            row = []
            for n in names:
                v = next(
                    r[m]["mean"]
                    for r in reports[n]["results"]
                    if r["method"] == "meta-learner" and (r["protocol"], r["k"]) == (protocol, k)
                )
                means.setdefault((protocol, m, n), []).append(v)
                row.append(f"{v:.4f}")
            print(f"| {protocol} | {k} | {m} | " + " | ".join(row) + " |")
    for (protocol, m, n), vs in means.items():
        print(f"mean over K: {protocol} {m} {n}: {np.mean(vs):.4f}")
    for n in names:
        for seed, ch in reports[n].get("model_choices", {}).items():
            print(f"{n} {seed}: cf {ch.get('classical item-item path')} | als {ch.get('ALS ranking path')}")


if __name__ == "__main__":
    main(sys.argv[1:])
