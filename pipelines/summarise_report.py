"""Print the README's results tables from a report.json written by `recsys evaluate`.

For each protocol (and scenario) and K: the best baseline per metric next to the meta-learner, with
the relative difference; then, when the report has meta-learner variants, the ablation table: each
variant's difference to the best baseline, averaged over K = 3, 5, 10.

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


def _groups(report: dict) -> dict[tuple, list]:
    groups: dict[tuple, list] = {}
    for r in report["results"]:
        groups.setdefault((r["protocol"], r["scenario"], r["k"]), []).append(r)
    return groups


def _best_baseline(report: dict, group: list, key: str, pick) -> tuple[float, str] | None:
    kinds = report.get("methods", {})
    vals = [
        (r[key]["mean"], r["method"])
        for r in group
        if kinds.get(r["method"], {}).get("kind", "baseline") == "baseline"
        and not r["method"].startswith("meta-learner")
        and key in r
        and not math.isnan(r[key]["mean"])
    ]
    return pick(vals) if vals else None


def ablations(report: dict, metrics=METRICS[:3], ks: tuple[str, ...] = ("3", "5", "10")) -> str:
    """Each meta-learner variant's relative difference to the best baseline, mean over ``ks`` (a
    protocol without those K, such as MeLU's with K = all, uses the K it has), one column group per
    protocol and scenario."""
    groups = _groups(report)
    wheres = list(dict.fromkeys((p, sc) for p, sc, _ in groups))
    variants = list(
        dict.fromkeys(
            r["method"] for g in groups.values() for r in g if r["method"].startswith("meta-learner")
        )
    )
    if len(variants) < 2:
        return ""

    def label(where: tuple[str, str]) -> str:
        return where[0] if where[1] == "new_users" else f"{where[0]} / {where[1]}"

    header = [f"{label(w)} {name}" for w in wheres for _, name, _ in metrics]
    out = ["| variant | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for variant in variants:
        cells = []
        for where in wheres:
            present = {k for p, sc, k in groups if (p, sc) == where}
            use = [k for k in ks if k in present] or sorted(present)
            for key, _, pick in metrics:
                diffs = []
                for k in use:
                    group = groups[(*where, k)]
                    row = next((r for r in group if r["method"] == variant), None)
                    best = _best_baseline(report, group, key, pick)
                    if row is None or key not in row or not best or not best[0]:
                        continue
                    diffs.append((row[key]["mean"] / best[0] - 1) * 100)
                cells.append(f"{sum(diffs) / len(diffs):+.1f}%" if diffs else "–")
        out.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def summarise(report: dict, metrics=METRICS) -> str:
    groups = _groups(report)
    out = [
        "| protocol | K | "
        + " | ".join(f"{label}: best baseline / meta-learner" for _, label, _ in metrics)
        + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for (protocol, scenario, k), group in groups.items():
        meta = next((r for r in group if r["method"] == "meta-learner"), None)
        if meta is None:
            continue
        cells = []
        for key, _, pick in metrics:
            found = _best_baseline(report, group, key, pick)
            if found is None or key not in meta:
                cells.append("–")
                continue
            best, name = found
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
    report = json.loads(args.report.read_text())
    print(summarise(report))
    table = ablations(report)
    if table:
        print("\nAblations (difference to the best baseline, mean over K = 3, 5, 10 where present):\n")
        print(table)


if __name__ == "__main__":
    main()
