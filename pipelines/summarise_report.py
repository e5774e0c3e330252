"""Print the README's results tables from a report.json written by `recsys evaluate`.

For each protocol (and scenario) and K: the best baseline per metric next to the meta-learner, with
the relative difference; then the ablation rows of the meta-learner.

Usage: ``python -m pipelines.summarise_report reports/latest/report.json``
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

METRICS = (
    ("mae", "MAE", min),
    ("recall@20", "Recall@20", max),
    ("ndcg@10", "nDCG@10", max),
    ("query_ndcg@3", "qnDCG@3", max),
)


def summarise(report: dict, metrics=METRICS) -> str:
    kinds = report.get("methods", {})
    rows = report["results"]
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["scenario"], r["k"]), []).append(r)
    out = [
        "| protocol | K | "
        + " | ".join(f"{label}: best baseline / meta-learner" for _, label, _ in metrics)
        + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for (protocol, scenario, k), group in groups.items():
        base = [
            r
            for r in group
            if kinds.get(r["method"], {}).get("kind", "baseline") == "baseline"
            and not r["method"].startswith("meta-learner")
        ]
        meta = next((r for r in group if r["method"] == "meta-learner"), None)
        if meta is None:
            continue
        cells = []
        for key, _, pick in metrics:
            vals = [
                (r[key]["mean"], r["method"]) for r in base if key in r and not math.isnan(r[key]["mean"])
            ]
            if not vals or key not in meta:
                cells.append("–")
                continue
            best, name = pick(vals)
            m = meta[key]["mean"]
            rel = f"{(m / best - 1) * 100:+.1f}%" if best else "n/a"  # e.g. no baseline hits a new item
            cells.append(f"{best:.3f} ({name}) / **{m:.3f}** ({rel})")
        where = protocol if scenario == "new_users" else f"{protocol} / {scenario}"
        out.append(f"| {where} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("report", type=Path)
    args = p.parse_args(argv)
    print(summarise(json.loads(args.report.read_text())))


if __name__ == "__main__":
    main()
