"""Compare the meta-learner's cells of two suite reports (before / after): mean, paired difference to the
best fair baseline (by test mean, as the summary does) and each seed's added-path choices.

Usage: python compare.py OLD_REPORT.json NEW_REPORT.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

METRICS = ("mae", "recall@20", "ndcg@10", "query_ndcg@3")
BETTER_LOW = {"mae"}


def cells(report: dict) -> dict:
    out: dict = {}
    methods: dict = {}
    for row in report["results"]:
        key = (row["protocol"], row["scenario"], row["k"])
        methods.setdefault(key, {})[row["method"]] = row
    paired = {(p["protocol"], p["scenario"], p["k"], p["metric"], p["baseline"]): p for p in report["paired"]}
    for key, rows in methods.items():
        meta = rows.get("meta-learner")
        if meta is None:
            continue
        for m in METRICS:
            if m not in meta:
                continue
            base = {n: r[m]["mean"] for n, r in rows.items() if not n.startswith("meta-learner") and m in r}
            pick = min if m in BETTER_LOW else max
            best = pick(base, key=base.get)
            d = paired.get((*key, m, best))
            out[(*key, m)] = (meta[m]["mean"], best, d)
    return out


def main(old_path: str, new_path: str) -> None:
    old, new = (json.loads(Path(p).read_text()) for p in (old_path, new_path))
    a, b = cells(old), cells(new)
    print("| scenario | K | metric | before | after | after - before | after vs best baseline |")
    print("|---|---|---|---|---|---|---|")
    for key in b:
        if key not in a:
            continue
        (mo, _, _), (mn, best, d) = a[key], b[key]
        diff = f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] ({best})" if d else best
        print(f"| {key[1]} | {key[2]} | {key[3]} | {mo:.3f} | {mn:.3f} | {mn - mo:+.3f} | {diff} |")
    for name, rep in (("before", old), ("after", new)):
        for seed, ch in rep.get("model_choices", {}).items():
            print(
                f"{name} {seed}: cf {ch.get('classical item-item path')} | als {ch.get('ALS ranking path')}"
            )


if __name__ == "__main__":
    main(*sys.argv[1:3])
