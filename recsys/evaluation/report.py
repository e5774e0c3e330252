"""Evaluation reports: ``report.json`` (everything), ``report.md`` (one table per protocol, scenario and
K, best per column in bold) and PNG plots (the cold-start curve with interval bands, and the
distribution of per-user error)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from recsys.evaluation.runner import CATALOGUE_METRICS, QUERY_METRICS, RATING_METRICS, Evaluation
from recsys.utils.io import atomic_write_json, atomic_write_text
from recsys.utils.machine import describe, numeric_environment
from recsys.version import __version__

LOWER_IS_BETTER = {"mae", "rmse"}
ABLATION_METRICS = ("mae", "query_ndcg@3", "recall@20", "ndcg@10")
"""The metrics the report's paired ablation table shows (the summary's four)."""
LABELS = {
    "mae": "MAE",
    "rmse": "RMSE",
    "query_ndcg@1": "qnDCG@1",
    "query_ndcg@3": "qnDCG@3",
    "query_ndcg@5": "qnDCG@5",
    "recall@10": "Recall@10",
    "recall@20": "Recall@20",
    "ndcg@10": "nDCG@10",
    "map@20": "MAP@20",
    "hit@10": "HR@10",
}


def build_report(ev: Evaluation, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "dataset": ev.ds.name,
        "feedback": "implicit" if ev.ds.implicit else "explicit",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "settings": ev.s.__dict__,
        "config": ev.config.to_dict(),
        "splits": ev.splits,
        "skipped": dict(getattr(ev, "skipped", {})),
        "tuning": ev.tuning,
        "tuning_tasks": dict(getattr(ev, "tuning_protocols", {})),
        "model_choices": dict(getattr(ev, "model_choices", {})),
        "methods": getattr(ev, "methods_meta", {}),
        "timings_seconds": {k: round(v, 2) for k, v in ev.timings.items()},
        "environment": {"recsys": __version__} | numeric_environment(),
        "results": ev.results(),
        "paired": ev.paired(),
        "paired_ablations": ev.paired_ablations(),
    } | (extra or {})


def _fmt(cell: dict | None) -> str:
    if not cell or cell["mean"] is None or math.isnan(cell["mean"]):
        return "–"
    half = (cell["high"] - cell["low"]) / 2
    text = f"{cell['mean']:.3f} ± {half:.3f}"
    return text + (f" (sd {cell['seed_sd']:.3f})" if cell.get("seed_sd") is not None else "")


def _ablation_lines(report: dict[str, Any]) -> list[str]:
    """The paired ablation table: each variant minus its reference, per protocol, K and metric."""
    if not report.get("paired_ablations"):
        return []
    lines = [
        "## Ablations: each variant minus its reference, paired over the same users",
        "",
        "Mean of the per-user differences with its paired 95% bootstrap interval (lower MAE is better, "
        "higher ranking metrics are better); the reference of a variant retrained on the first seed "
        "only is the default's own first-seed row.",
        "",
        "| protocol | K | variant | reference | metric | users | difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in report["paired_ablations"]:
        if d["metric"] not in ABLATION_METRICS:
            continue
        where = d["protocol"] + (f" / {d['scenario']}" if d["scenario"] != "new_users" else "")
        lines.append(
            f"| {where} | {d['k']} | {d['variant']} | {d['reference']} | {LABELS.get(d['metric'], d['metric'])} "
            f"| {d['users']} | {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] |"
        )
    lines.append("")
    return lines


def markdown(report: dict[str, Any]) -> str:
    rows = report["results"]
    lines = [f"# Cold-start evaluation: {report['dataset']}", ""]
    s = report["settings"]
    lines += [
        f"Protocols {', '.join(s['protocols'])}; K = {', '.join(map(str, s['shots']))}; {s['seeds']} seed(s); "
        f"mean over distinct users ± half the 95% bootstrap interval over distinct users (a user tested "
        "under several seeds or draws counts once, with its mean); (sd …): the spread of the per-seed "
        "means across seeds (training randomness); best per column in **bold**.",
        "MAE/RMSE and qnDCG (query nDCG, gain 2^r - 1, ranking only the 10 query items: **MeLU's protocol**) "
        "are computed on the query ratings; Recall, nDCG@10, MAP, HR rank the whole catalogue except the "
        f"support items, relevant = items rated ≥ {s['threshold']:g} outside the support; "
        "Recall@k = hits / min(k, relevant) (Liang et al., 2018).",
        "",
    ]
    if s.get("nested"):
        lines += [
            "**Nested (model selection) run:** each protocol was applied again inside its training users; "
            "the users below are pseudo-new *training* users, the split's real new users were not touched.",
            "",
        ]
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["protocol"], r["scenario"], r["k"]), []).append(r)
    for (protocol, scenario, k), group in groups.items():
        metrics = [
            m for m in (*RATING_METRICS, *QUERY_METRICS, *CATALOGUE_METRICS) if any(m in r for r in group)
        ]
        best = {}
        for m in metrics:
            vals = [(r[m]["mean"], r["method"]) for r in group if m in r and not math.isnan(r[m]["mean"])]
            if vals:
                best[m] = (min if m in LOWER_IS_BETTER else max)(vals)[1]
        title = f"## {protocol}" + (f" / {scenario}" if scenario != "new_users" else "") + f", K = {k}"
        users = max(r["users"] for r in group)
        tasks = max(r.get("tasks", r["users"]) for r in group)
        lines += [title, "", f"{users} distinct users ({tasks} user tasks over seeds and draws)", ""]
        header = "| method | " + " | ".join(LABELS.get(m, m) for m in metrics) + " | coverage@10 |"
        lines += [header, "|" + "---|" * (len(metrics) + 2)]
        for r in group:
            cells = []
            for m in metrics:
                text = _fmt(r.get(m))
                cells.append(f"**{text}**" if best.get(m) == r["method"] else text)
            cov = r.get("coverage@10")
            lines.append(
                f"| {r['method']} | " + " | ".join(cells) + f" | {cov:.3f} |" if cov is not None else " |"
            )
        lines.append("")
    lines += _ablation_lines(report)
    if report.get("skipped"):
        lines += ["## Support sizes skipped", ""]
        lines += [f"- {where}: {why}" for where, why in report["skipped"].items()] + [""]
    if report.get("model_choices"):
        lines += ["## The meta-learner's choices on its validation users", ""]
        for run, chosen in report["model_choices"].items():
            lines.append(f"- {run}: " + "; ".join(f"{k}: {v}" for k, v in chosen.items()))
        lines.append("")
    if report.get("tuning"):
        lines += ["## Baseline hyperparameters chosen on validation users", ""]
        for name, by_run in report["tuning"].items():
            lines.append(f"- {name}: " + "; ".join(f"{run}: {p}" for run, p in by_run.items()))
        lines.append("")
        for protocol, how in (report.get("tuning_tasks") or {}).items():
            lines.append(f"- tuning tasks ({protocol}): {how}")
        lines += [
            "- ranking baselines choose their positives (`all` ratings or the `liked` ones, rated at or "
            "above the relevance threshold, support included) on these tasks; see `positives` above",
            "",
        ]
    lines += ["## Time", ""] + [f"- {k}: {v:.1f} s" for k, v in report["timings_seconds"].items()] + [""]
    if report.get("environment"):  # float results can differ between machines (recsys.utils.machine)
        lines += [f"Machine: {describe(report['environment'])}.", ""]
    return "\n".join(lines)


def plot_curves(report: dict[str, Any], out: Path) -> list[Path]:
    """Cold-start curve: metric against K, one line per method, interval bands (one PNG per protocol)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = [r for r in report["results"] if r["k"] != "all"]
    for protocol in sorted({r["protocol"] for r in rows}):
        pr = [r for r in rows if r["protocol"] == protocol]
        metrics = [m for m in ("mae", "recall@20", "ndcg@10") if any(m in r for r in pr)]
        if not metrics:
            continue
        methods = list(dict.fromkeys(r["method"] for r in pr))
        colours = plt.get_cmap("tab20")
        fig, axes = plt.subplots(1, len(metrics), figsize=(5.4 * len(metrics), 4.4), squeeze=False)
        handles: dict[str, Any] = {}
        for ax, metric in zip(axes[0], metrics, strict=True):
            for n, method in enumerate(methods):
                pts = sorted((int(r["k"]), r[metric]) for r in pr if r["method"] == method and metric in r)
                if not pts:
                    continue
                ks = [p[0] for p in pts]
                main = method == "meta-learner"
                ablation = method.startswith("meta-learner (")
                line = ax.plot(
                    ks,
                    [p[1]["mean"] for p in pts],
                    "--" if ablation else "-",
                    marker="o",
                    ms=3,
                    lw=2.8 if main else 1.2,
                    color="black" if main else colours(n % 20),
                    label=method,
                    zorder=3 if main else 2,
                )[0]
                ax.fill_between(
                    ks,
                    [p[1]["low"] for p in pts],
                    [p[1]["high"] for p in pts],
                    color=line.get_color(),
                    alpha=0.1,
                )
                handles.setdefault(method, line)
            ax.set_xscale("log")
            ax.set_xticks(sorted({int(r["k"]) for r in pr}))
            ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.set_xlabel("K (ratings the new user gave)")
            better = "lower" if metric in LOWER_IS_BETTER else "higher"
            ax.set_title(f"{LABELS.get(metric, metric)} ({better} is better)")
            ax.grid(alpha=0.3)
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=4, fontsize=8, frameon=False)
        fig.suptitle(
            f"Cold-start curve — {report['dataset']}, {protocol} protocol (bands: 95% bootstrap intervals)"
        )
        fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(handles) + 3) // 4), 1, 1))
        path = out / f"cold_start_curve_{protocol}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def plot_error_distribution(ev: Evaluation, out: Path, k: str = "5") -> Path | None:
    """Per-user MAE distribution for each rating predictor (box plots), one panel per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, dict[str, np.ndarray]] = {}
    for (protocol, scenario, kk, method), cell in ev.cells.items():
        want = "all" if protocol == "melu" else k
        if kk != want or "mae" not in cell.values or scenario not in ("new_users", "user_cold_state"):
            continue
        values = np.concatenate(cell.values["mae"])
        panels.setdefault(protocol, {})[method] = values[~np.isnan(values)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (protocol, data) in zip(axes[0], sorted(panels.items()), strict=True):
        names = sorted(data, key=lambda n: np.median(data[n]))
        ax.boxplot([data[n] for n in names], vert=False, showfliers=False)
        ax.set_yticks(range(1, len(names) + 1), names, fontsize=8)
        ax.set_xlabel("per-user MAE on the query ratings")
        ax.set_title(f"{protocol}, K = {'all but 10' if protocol == 'melu' else k}")
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(f"Distribution of per-user error — {ev.ds.name}")
    fig.tight_layout()
    path = out / "per_user_error.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(ev: Evaluation, out: str | Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = build_report(ev, extra)
    plots = [p.name for p in plot_curves(report, out)]
    dist = plot_error_distribution(ev, out)
    if dist:
        plots.append(dist.name)
    report["plots"] = plots
    atomic_write_json(out / "report.json", report)
    atomic_write_text(
        out / "report.md", markdown(report) + "\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n"
    )
    return report
