"""The benchmark suite's summary: ``docs/benchmarks/README.md`` and README.md's results section (between
the ``benchmark-summary`` markers), built from the reports under ``docs/benchmarks/`` alone.

For every part of the suite it says whether it has run (with which settings, when, and its wall time)
or not; for every part that has, one row per protocol / scenario, K and metric (MAE, Recall@20,
nDCG@10): the meta-learner, the best fair baseline and a verdict; above them, issue 21's targets, each
met or not with the figure reached (``pipelines.benchmark_targets``).

* **Best fair baseline**: among the report's baselines (every method of kind ``baseline``: tuned on
  validation users, never on test users), the one with the best mean of that metric on the report's
  test users — what a reader of the report compares against. It is chosen after the fact on test
  users, which favours the baselines.
* **Verdict**: *behind* when some fair baseline's 95% interval lies entirely on the better side of the
  meta-learner's; *ahead* when the meta-learner's interval lies entirely on the better side of every
  fair baseline's; otherwise *level (intervals overlap)*.
* **Intervals** are the report's: 95% bootstrap over distinct users, per method. Reports that carry
  ``paired`` rows (the meta-learner minus each baseline, a paired bootstrap over the users both were
  tested on) get the difference to the best baseline with its paired interval, and the verdict comes
  from the paired intervals: *behind* when the difference to some baseline is worse with an interval
  that excludes 0, *ahead* when it is better than every baseline's with intervals that exclude 0.
  Older reports without them fall back to the per-method intervals (overlapping ones can still hide a
  real difference).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.benchmark_targets import PartRows, targets_table
from recsys.evaluation.ablations import SEED0_LABEL, reference_of

if TYPE_CHECKING:
    from pipelines.benchmark import Entry, Part

START = "<!-- benchmark-summary:start -->"
END = "<!-- benchmark-summary:end -->"
METRICS = (
    ("mae", "MAE", True),
    ("query_ndcg@3", "query nDCG@3", False),
    ("recall@20", "Recall@20", False),
    ("ndcg@10", "nDCG@10", False),
)
BEHIND, AHEAD, LEVEL = "**behind**", "ahead", "level (intervals overlap)"
PAIRED_LEVEL = "level (paired interval includes 0)"


# ---- verdicts --------------------------------------------------------------------------------------


def _ok(cell: dict | None) -> bool:
    return bool(cell) and all(
        cell.get(k) is not None and not math.isnan(cell[k]) for k in ("mean", "low", "high")
    )


def _clearly_better(a: dict, b: dict, lower_is_better: bool) -> bool:
    """``a``'s interval lies entirely on the better side of ``b``'s."""
    return a["high"] < b["low"] if lower_is_better else a["low"] > b["high"]


def verdict(meta: dict, baselines: list[dict], lower_is_better: bool) -> str:
    """Behind (a fair baseline is clearly better), ahead (clearly better than every fair baseline) or
    level, from the per-method 95% intervals."""
    if any(_clearly_better(b, meta, lower_is_better) for b in baselines):
        return BEHIND
    if baselines and all(_clearly_better(meta, b, lower_is_better) for b in baselines):
        return AHEAD
    return LEVEL


def _worse(d: dict, lower_is_better: bool) -> bool:
    """A paired difference (first minus second) that is worse with an interval excluding 0."""
    return d["low"] > 0 if lower_is_better else d["high"] < 0


def _better(d: dict, lower_is_better: bool) -> bool:
    """A paired difference that is better with an interval excluding 0."""
    return d["high"] < 0 if lower_is_better else d["low"] > 0


def paired_verdict(diffs: list[dict], lower_is_better: bool) -> str:
    """Behind / ahead / level from the paired differences (meta-learner minus each baseline)."""

    if any(_worse(d, lower_is_better) for d in diffs):
        return BEHIND
    if diffs and all(_better(d, lower_is_better) for d in diffs):
        return AHEAD
    return PAIRED_LEVEL


def _is_baseline(report: dict, method: str) -> bool:
    kind = report.get("methods", {}).get(method, {}).get("kind")
    return kind == "baseline" if kind else not method.startswith("meta-learner")


def comparisons(report: dict) -> list[dict[str, Any]]:
    """One row per (protocol, scenario, K, metric) where the meta-learner has the metric: its cell, the
    best fair baseline's (by mean on the report's test users) and the verdict."""
    paired: dict[tuple[str, str, str, str], list[dict]] = {}
    for d in report.get("paired") or []:
        paired.setdefault((d["protocol"], d["scenario"], str(d["k"]), d["metric"]), []).append(d)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in report["results"]:
        groups.setdefault((r["protocol"], r["scenario"], str(r["k"])), []).append(r)
    rows = []
    for (protocol, scenario, k), group in groups.items():
        meta = next((r for r in group if r["method"] == "meta-learner"), None)
        if meta is None:
            continue
        for key, label, lower in METRICS:
            if not _ok(meta.get(key)):
                continue
            fair = [r for r in group if _is_baseline(report, r["method"]) and _ok(r.get(key))]
            if meta[key]["high"] == 0 and all(r[key]["high"] == 0 for r in fair):
                continue  # 0 for every method (e.g. MeLU's new-item catalogue metrics in older reports)
            best = (min if lower else max)(fair, key=lambda r: r[key]["mean"]) if fair else None
            names = {r["method"] for r in fair}
            diffs = [d for d in paired.get((protocol, scenario, k, key), []) if d["baseline"] in names]
            to_best = next((d for d in diffs if best and d["baseline"] == best["method"]), None)
            if diffs and fair:
                decided = paired_verdict(diffs, lower)
            else:
                decided = verdict(meta[key], [r[key] for r in fair], lower) if fair else "no baseline"
            rows.append(
                {
                    "protocol": protocol,
                    "scenario": scenario,
                    "k": k,
                    "metric": label,
                    "users": meta.get("users"),
                    "tasks": meta.get("tasks"),
                    "meta": meta[key],
                    "best": best[key] if best else None,
                    "best_method": best["method"] if best else None,
                    "difference": to_best,
                    "verdict": decided,
                    "behind": decided == BEHIND,
                }
            )
    return rows


def _unpaired_ablations(report: dict) -> list[dict]:
    """For reports written before paired ablation rows existed: each ablation row's mean minus the
    default's (its first-seed row for variants retrained on seed 0 only), without an interval."""
    methods = report.get("methods", {})
    cells = {(r["protocol"], r["scenario"], str(r["k"]), r["method"]): r for r in report["results"]}
    rows = []
    for name, m in methods.items():
        if m.get("kind") != "ablation" or name == f"meta-learner ({SEED0_LABEL})":
            continue
        ref = reference_of(name, methods)
        for (protocol, scenario, k, method), r in cells.items():
            other = cells.get((protocol, scenario, k, ref))
            if method != name or other is None:
                continue
            for key, _, _ in METRICS:
                if _ok(r.get(key)) and _ok(other.get(key)):
                    rows.append(
                        {
                            "variant": name,
                            "reference": ref,
                            "protocol": protocol,
                            "scenario": scenario,
                            "k": k,
                            "metric": key,
                            "mean": r[key]["mean"] - other[key]["mean"],
                        }
                    )
    return rows


def ablation_rows(report: dict) -> list[dict[str, Any]]:
    """One row per ablation variant and protocol / scenario: per metric, the variant minus its reference
    averaged over K, and (from paired rows) at how many K the variant is resolved worse or better
    (paired 95% interval excluding 0). ``paired`` is False for reports without paired ablation rows."""
    paired = report.get("paired_ablations")
    diffs = paired if paired else _unpaired_ablations(report)
    groups: dict[tuple[str, str, str, str], dict[str, list[dict]]] = {}
    for d in diffs:
        key = (d["variant"], d["reference"], d["protocol"], d["scenario"])
        groups.setdefault(key, {}).setdefault(d["metric"], []).append(d)
    rows = []
    for (variant, reference, protocol, scenario), by_metric in groups.items():
        cells = {}
        for key, label, lower in METRICS:
            ds = by_metric.get(key)
            if not ds:
                continue
            cells[label] = {
                "mean": sum(d["mean"] for d in ds) / len(ds),
                "n": len(ds),
                "worse": sum(_worse(d, lower) for d in ds) if paired else None,
                "better": sum(_better(d, lower) for d in ds) if paired else None,
                "same": all(d["mean"] == 0 and d.get("low", 0) == d.get("high", 0) == 0 for d in ds),
            }
        if cells:
            rows.append(
                {
                    "variant": variant,
                    "reference": reference,
                    "protocol": protocol,
                    "scenario": scenario,
                    "metrics": cells,
                    "paired": bool(paired),
                }
            )
    return rows


# ---- part status -----------------------------------------------------------------------------------


@dataclass
class PartStatus:
    part: Part
    report: dict | None
    timing: dict | None
    differs: str  # how the report's settings differ from the suite's ("" when they match)

    @property
    def state(self) -> str:
        if self.report is not None:
            return "run"
        if self.timing and self.timing.get("skipped"):
            return "not run (" + self.timing["skipped"] + ")"
        if self.timing and self.timing.get("exit_code") not in (0, None):
            return f"failed (exit {self.timing['exit_code']}; see timing.json)"
        return "not run yet"

    @property
    def label(self) -> str:
        if self.report is None:
            return self.state
        when = str(self.report.get("created", ""))[:10]
        took = f", {wall(self.timing['seconds'])}" if self.timing and self.timing.get("seconds") else ""
        return f"run {when}{took}" + (f"; not the suite's settings: {self.differs}" if self.differs else "")


def wall(seconds: float) -> str:
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m} min" if hours else (f"{m} min {s} s" if m else f"{s} s")


def _machine_note(timing: dict) -> str:
    """Where a part ran: CPU cores, torch's kernel level (other kernels train another ranking side, as
    another seed would: ``docs/experiments/2026-12-06-cross-machine``) and the load average when it
    started (a shared machine is slower). Older records name the level ``cpu_capability``."""
    notes = []
    machine = timing.get("machine", {})
    if machine.get("cpus"):
        notes.append(f"{machine['cpus']} CPU cores")
    kernels = machine.get("torch_cpu_capability") or machine.get("cpu_capability")
    if kernels:
        notes.append(f"{kernels} kernels")
    if timing.get("load_average_at_start"):
        notes.append(f"load {timing['load_average_at_start'][0]:.1f} at start")
    if timing.get("load_average_at_end"):
        notes.append(f"15-min load {timing['load_average_at_end'][2]:.1f} at end")
    return f" ({', '.join(notes)})" if notes else ""


def _settings_text(shots: str, seeds: int, ablations: str, protocol: str) -> str:
    k = "" if protocol == "melu" else f"K = {shots}, "
    return f"{k}{seeds} seed{'s' if seeds != 1 else ''}, ablations {ablations or 'none'}"


def _differs(entry: Entry, protocol: str, settings: dict) -> str:
    shots = ",".join(map(str, settings.get("shots", [])))
    ablations = ",".join(settings.get("ablations", [])) or "none"
    ran = (shots, settings.get("seeds"), ablations)
    suite = (entry.shots, entry.seeds, entry.ablations)
    if protocol == "melu":
        ran, suite = ran[1:], suite[1:]
    if ran == suite:
        return ""
    return (
        f"{_settings_text(shots, settings.get('seeds', 0), ablations, protocol)} "
        f"(the suite's: {_settings_text(entry.shots, entry.seeds, entry.ablations, protocol)})"
    )


def part_status(part: Part, out: Path) -> PartStatus:
    folder = out / part.entry.name
    report_path = folder / part.protocol / "report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else None
    timing_path = folder / "timing.json"
    timing = (
        json.loads(timing_path.read_text()).get("parts", {}).get(part.protocol)
        if timing_path.exists()
        else None
    )
    differs = _differs(part.entry, part.protocol, report["settings"]) if report else ""
    return PartStatus(part, report, timing, differs)


# ---- markdown --------------------------------------------------------------------------------------


def _cell(c: dict | None) -> str:
    if not c:
        return "–"
    text = f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"
    return text + (f" sd {c['seed_sd']:.3f}" if c.get("seed_sd") is not None else "")


def _where(row: dict) -> str:
    return row["protocol"] if row["scenario"] == "new_users" else f"{row['protocol']} / {row['scenario']}"


HOW_TO_READ = (
    "How to read the tables: each cell is the mean over distinct test users with its 95% bootstrap "
    "interval over those users `[low, high]` (and `sd`, the spread of the per-seed means across training "
    "seeds, where several seeds ran: the training noise the intervals over users leave out; a CPU with "
    "other vector kernels trains the ranking side as other seeds would, so a verdict whose interval ends "
    "near 0 may differ there). **Best fair baseline**: of the report's baselines (each tuned on "
    "validation users only), the one with the best mean of that metric *on the test users* — chosen "
    "after the fact, which favours the baselines. **Verdict**: *behind* when some baseline's interval "
    "lies entirely on the better side of the meta-learner's, *ahead* when the meta-learner's interval "
    "lies entirely on the better side of every baseline's, otherwise *level (intervals overlap)*. "
    "**Difference (paired)**: the meta-learner minus the best fair baseline, the mean of the per-user "
    "differences with a paired 95% bootstrap interval over the users both were tested on; where a report "
    "has these, the verdict comes from them instead (*behind* when the difference to some baseline is worse "
    "with an interval that excludes 0, *ahead* when it is better than every baseline's with intervals "
    "that exclude 0, else *level (paired interval includes 0)*). Reports written before the paired "
    "differences existed show `–` there and keep the per-method verdict. Lower MAE is better; higher "
    "query nDCG@3 (MeLU's metric: the query items ranked by predicted score), Recall@20 and nDCG@10 "
    "(the whole catalogue ranked) are better. A metric that is 0 for every method is left out; "
    "on MeLU's new-item scenarios the catalogue metrics are near 0 for every method (the query items "
    "are items no training user rated)."
)


ABLATIONS_HOW = (
    "Ablations: each variant minus its reference (the default, or for variants retrained on the first "
    "seed only, the default's own first-seed row), averaged over K; in brackets, at how many K the "
    "variant is resolved *worse* / *better* than its reference (paired 95% interval over the same users "
    "excluding 0); *same*: identical to its reference for every user at every K. A variant that is "
    "worse means the piece it removes or changes pays."
)


def _ablation_cell(c: dict | None) -> str:
    if not c:
        return "–"
    if c.get("same"):
        return "same"  # the variant cannot change this metric here (e.g. a ranking path and MAE)
    if c["worse"] is None:
        return f"{c['mean']:+.3f} (unpaired)"
    return f"{c['mean']:+.3f} (worse {c['worse']}, better {c['better']} of {c['n']})"


def _ablation_table(report: dict) -> list[str]:
    rows = ablation_rows(report)
    if not rows:
        return []
    labels = [label for _, label, _ in METRICS]
    lines = [
        "",
        ABLATIONS_HOW
        + (
            ""
            if rows[0]["paired"]
            else " This report predates paired ablation rows: plain differences of the means, no intervals."
        ),
        "",
    ]
    lines.append("| variant | reference | protocol | " + " | ".join(labels) + " |")
    lines.append("|---|---|---|" + "---|" * len(labels))
    for r in rows:
        where = _where(r)
        short = r["variant"].removeprefix("meta-learner (").removesuffix(")")
        ref = "default" if r["reference"] == "meta-learner" else "default, seed 0"
        cells = " | ".join(_ablation_cell(r["metrics"].get(label)) for label in labels)
        lines.append(f"| {short} | {ref} | {where} | {cells} |")
    return lines


def render(statuses: list[PartStatus], link: str = "", heading: str = "##") -> str:
    """The summary in markdown; ``link`` prefixes links to the reports (relative to where it is shown)."""
    lines = [
        "Generated by `python -m pipelines.benchmark --summary-only` from the reports under "
        f"[`docs/benchmarks/`]({link or './'}); the full suite is `make benchmark` (hours on 2 CPU cores). "
        "Parts not run yet have no numbers here.",
        "",
        "| part | status | settings | wall time | report |",
        "|---|---|---|---|---|",
    ]
    for st in statuses:
        e = st.part.entry
        if st.report:
            s = st.report["settings"]
            settings = _settings_text(
                ",".join(map(str, s["shots"])), s["seeds"], ",".join(s["ablations"]), st.part.protocol
            )
            state = f"run {str(st.report.get('created', ''))[:10]}" + (
                " (**not the suite's settings**)" if st.differs else ""
            )
            secs = st.timing.get("seconds") if st.timing else None
            took = (wall(secs) + _machine_note(st.timing)) if secs else "–"
            ref = f"[report]({link}{e.name}/{st.part.protocol}/report.md)"
        else:
            settings = _settings_text(e.shots, e.seeds, e.ablations, st.part.protocol) + " (suite)"
            state, took, ref = st.state, "–", "–"
        lines.append(f"| {e.title}: {st.part.protocol} | {state} | {settings} | {took} | {ref} |")
    rows = [comparisons(st.report) if st.report else None for st in statuses]  # the targets' and tables'
    parts = [PartRows(f"{st.part.entry.title}: {st.part.protocol}", st.part.entry.name, r)
             for st, r in zip(statuses, rows, strict=True)]  # fmt: skip
    targets = targets_table(parts, link)
    lines += ["", *([*targets, ""] if targets else []), HOW_TO_READ, ""]
    for st, compared in zip(statuses, rows, strict=True):
        if st.report is None or compared is None:
            continue
        e = st.part.entry
        lines += [f"{heading} {e.title}: {st.part.protocol}", ""]
        lines.append(f"{e.note} Command: `{st.timing['command']}`." if st.timing else e.note)
        if st.differs:
            lines.append(f"**Not the suite's settings**: {st.differs}.")
        if st.timing and st.timing.get("note"):
            lines.append(f"Note on this run: {st.timing['note']}")
        lines += [
            "",
            "| protocol | K | users (tasks) | metric | meta-learner | best fair baseline | difference (paired) | verdict |",
        ]
        lines.append("|---|---|---|---|---|---|---|---|")
        for r in compared:
            best = f"{_cell(r['best'])} ({r['best_method']})" if r["best"] else "–"
            users = f"{r['users']} ({r['tasks']})" if r.get("tasks") is not None else str(r["users"])
            diff = r.get("difference")
            gap = f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "–"
            lines.append(
                f"| {_where(r)} | {r['k']} | {users} | {r['metric']} | {_cell(r['meta'])} | {best} | {gap} | {r['verdict']} |"
            )
        lines += _ablation_table(st.report)
        for where, why in (st.report.get("skipped") or {}).items():
            lines.append(f"\nSkipped {where}: {why}.")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between the markers replaced by ``block`` (markers kept). Missing or
    misordered markers are a ``ValueError``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"the README has no {START} ... {END} markers (in that order)")
    return text[: start + len(START)] + "\n" + block.strip("\n") + "\n" + text[end:]


def write_summaries(out: Path, readme: Path | None, parts: list[Part] | None = None) -> list[Path]:
    """Write ``<out>/README.md`` and, when ``readme`` is given, its section between the markers; the
    files written. Nothing is run: only existing reports are read."""
    from pipelines.benchmark import all_parts

    statuses = [part_status(p, out) for p in (parts if parts is not None else all_parts())]
    full = "# Benchmark suite: summary\n\n" + render(statuses, link="", heading="##")
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text(full)
    written = [out / "README.md"]
    if readme is not None:
        text = readme.read_text()
        prefix = out.relative_to(readme.parent).as_posix() + "/" if out.is_relative_to(readme.parent) else ""
        new = replace_block(text, render(statuses, link=prefix, heading="####"))
        if new != text:
            readme.write_text(new)
        written.append(readme)
    return written
