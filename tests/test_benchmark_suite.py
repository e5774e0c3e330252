"""pipelines.benchmark (the suite's parts, --only / --list) and pipelines.benchmark_summary (the summary
table and README section from existing reports). No test runs the suite itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipelines import benchmark
from pipelines.benchmark_summary import (
    AHEAD,
    BEHIND,
    END,
    LEVEL,
    START,
    comparisons,
    verdict,
    write_summaries,
)


def _c(mean: float, half: float = 0.01, **extra: float) -> dict:
    return {"mean": mean, "low": mean - half, "high": mean + half, **extra}


METHODS = {
    "item-mean": {"kind": "baseline"},
    "mf-als": {"kind": "baseline"},
    "ease": {"kind": "baseline"},
    "meta-learner": {"kind": "meta"},
    "meta-learner (no adaptation)": {"kind": "ablation"},
}


def fake_report(settings: dict | None = None) -> dict:
    """ML-100k random, K = 5: the meta-learner behind on MAE, level on Recall@20, ahead on nDCG@10; an
    ablation row that beats everything (it is not a baseline and must not be compared against)."""
    row = {"protocol": "random", "scenario": "new_users", "k": "5", "users": 189, "tasks": 189}
    results = [
        row | {"method": "item-mean", "mae": _c(0.81), "recall@20": _c(0.23), "ndcg@10": _c(0.20)},
        row | {"method": "mf-als", "mae": _c(0.76), "recall@20": _c(0.30), "ndcg@10": _c(0.30)},
        row | {"method": "ease", "recall@20": _c(0.44, 0.03), "ndcg@10": _c(0.45)},
        row | {"method": "meta-learner", "mae": _c(0.80, seed_sd=0.002), "recall@20": _c(0.45), "ndcg@10": _c(0.49)},
        row | {"method": "meta-learner (no adaptation)", "mae": _c(0.50), "recall@20": _c(0.9), "ndcg@10": _c(0.9)},
    ]  # fmt: skip
    base = {"protocols": ["random"], "shots": [5], "seeds": 1, "ablations": [], "baselines": []}
    return {
        "dataset": "ml-100k",
        "created": "2026-12-02T05:00:00Z",
        "settings": base | (settings or {}),
        "methods": METHODS,
        "results": results,
        "skipped": {},
    }


def write_fake_suite(out: Path, report: dict | None = None) -> None:
    folder = out / "ml-100k" / "random"
    folder.mkdir(parents=True)
    (folder / "report.json").write_text(json.dumps(report or fake_report()))
    timing = {"parts": {"random": {"seconds": 583.4, "command": "recsys evaluate --dataset ml-100k", "exit_code": 0,
                                   "machine": {"cpus": 2, "torch_cpu_capability": "AVX2"}}}}  # fmt: skip
    (out / "ml-100k" / "timing.json").write_text(json.dumps(timing))


# ---- verdicts --------------------------------------------------------------------------------------


def test_behind_means_a_fair_baseline_interval_lies_entirely_on_the_better_side() -> None:
    meta = _c(0.80)
    assert verdict(meta, [_c(0.76)], lower_is_better=True) == BEHIND  # MAE: lower is better
    assert verdict(meta, [_c(0.84)], lower_is_better=False) == BEHIND  # ranking: higher is better


def test_ahead_means_the_meta_learner_interval_is_clear_of_every_fair_baseline() -> None:
    meta = _c(0.80)
    assert verdict(meta, [_c(0.70), _c(0.75)], lower_is_better=False) == AHEAD
    # clear of one baseline but overlapping another: level, not ahead
    assert verdict(meta, [_c(0.70), _c(0.805)], lower_is_better=False) == LEVEL


def test_overlapping_intervals_are_level_even_when_the_means_differ() -> None:
    assert verdict(_c(0.80), [_c(0.79)], lower_is_better=True) == LEVEL
    assert verdict(_c(0.80), [_c(0.81)], lower_is_better=False) == LEVEL


def test_a_clearly_better_baseline_makes_it_behind_even_if_another_has_the_best_mean() -> None:
    """A wide interval on the best mean must not hide a narrower baseline that is clearly better."""
    wide_best, narrow = _c(0.90, half=0.2), _c(0.86, half=0.001)
    assert verdict(_c(0.80, half=0.02), [wide_best, narrow], lower_is_better=False) == BEHIND


def test_comparisons_pick_the_best_baseline_on_test_users_and_ignore_ablation_rows() -> None:
    rows = {r["metric"]: r for r in comparisons(fake_report())}
    assert rows["MAE"]["best_method"] == "mf-als" and rows["MAE"]["verdict"] == BEHIND
    assert rows["Recall@20"]["best_method"] == "ease" and rows["Recall@20"]["verdict"] == LEVEL
    assert rows["nDCG@10"]["best_method"] == "ease" and rows["nDCG@10"]["verdict"] == AHEAD
    assert all(r["best_method"] != "meta-learner (no adaptation)" for r in rows.values())


# ---- the summary and the README section ------------------------------------------------------------


def test_summary_says_behind_where_the_meta_learner_is_behind_and_lists_parts_not_run(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    write_fake_suite(out)
    write_summaries(out, None)
    text = (out / "README.md").read_text()
    mae = next(line for line in text.splitlines() if "| MAE |" in line)
    assert "**behind**" in mae and "mf-als" in mae and "0.800 [0.790, 0.810] sd 0.002" in mae
    assert "9 min 43 s (2 CPU cores, AVX2 kernels)" in text and "(ml-100k/random/report.md)" in text
    assert "**not the suite's settings**" in text  # K = 5, 1 seed: not the suite's K = 1…20, 3 seeds
    for part in benchmark.all_parts():
        if part.name != "ml-100k/random":
            title = f"| {part.entry.title}: {part.protocol} | not run yet |"
            assert title in text, title


def test_readme_section_between_the_markers_is_replaced_and_rebuilding_is_idempotent(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    write_fake_suite(out)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{START}\nold numbers 0.123\n{END}\n\nafter\n")
    write_summaries(out, readme)
    first = readme.read_text()
    assert "old numbers" not in first and first.startswith("# Title\n\nbefore\n\n" + START)
    assert first.endswith(END + "\n\nafter\n")
    assert "(docs/benchmarks/ml-100k/random/report.md)" in first  # links relative to the README
    summary = (out / "README.md").read_text()
    write_summaries(out, readme)
    assert readme.read_text() == first and (out / "README.md").read_text() == summary


def test_a_readme_without_the_markers_is_refused_and_left_alone(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    write_fake_suite(out)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="benchmark-summary"):
        write_summaries(out, readme)
    assert readme.read_text() == "# no markers\n"
    code = benchmark.main(["--summary-only", "--out", str(out), "--readme", str(readme)])
    assert code == 2


def test_summary_only_runs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(benchmark.subprocess, "call", lambda *a, **k: pytest.fail("ran a part"))
    out = tmp_path / "bench"
    write_fake_suite(out)
    assert benchmark.main(["--summary-only", "--out", str(out), "--no-readme"]) == 0
    assert "| MAE |" in (out / "README.md").read_text()


# ---- parts: --only and --list ----------------------------------------------------------------------


def test_only_selects_datasets_aliases_and_single_protocols_in_suite_order() -> None:
    names = [p.name for p in benchmark.select("melu,ml-100k")]
    assert names == ["ml-100k/temporal", "ml-100k/random", "melu/melu"]
    assert [p.name for p in benchmark.select("melu-ml1m")] == ["melu/melu"]
    assert [p.name for p in benchmark.select("ml-100k/random")] == ["ml-100k/random"]
    assert [p.name for p in benchmark.select(" ml-1m/temporal , ")] == ["ml-1m/temporal"]
    assert benchmark.select(None) == benchmark.select("") == benchmark.all_parts()


@pytest.mark.parametrize("only", ["nope", "ml-100k/melu", "gowalla/temporal"])
def test_an_unknown_part_is_a_usage_error_naming_the_known_ones(only: str) -> None:
    with pytest.raises(ValueError, match="ml-100k/temporal"):
        benchmark.select(only)
    assert benchmark.main(["--list", "--only", only]) == 2


def test_list_prints_each_part_command_and_status_without_running(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(benchmark.subprocess, "call", lambda *a, **k: pytest.fail("ran a part"))
    args = ["--list", "--only", "gowalla,ml-100k/random", "--seeds", "1", "--data-dir", "/d"]
    assert benchmark.main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == [
        "ml-100k/random",
        "gowalla/random",
    ]
    gowalla = lines[-1]
    assert "--interactions /d/gowalla/interactions.csv" in gowalla and "--protocol random" in gowalla
    assert "--seeds 1" in gowalla and "--no-mlflow" in gowalla and "ease" not in gowalla
    assert "--out docs/benchmarks/gowalla/random" in gowalla


def test_every_suite_entry_runs_evaluate_with_its_own_protocols_and_no_dataset_specific_code() -> None:
    for part in benchmark.all_parts():
        args = benchmark.evaluate_args(part, Path("/d"), benchmark.Overrides())
        assert args[args.index("--protocol") + 1] == part.protocol
        source = args[: args.index("--protocol")]
        assert source[0] in ("--dataset", "--interactions")
    ml1m = benchmark.evaluate_args(benchmark.select("ml-1m/random")[0], Path("/d"), benchmark.Overrides())
    assert ml1m[0] == "--interactions" and ml1m[1].endswith("ratings.csv")


def test_paired_differences_resolve_a_gap_that_overlapping_per_method_intervals_hide() -> None:
    """Users differ a lot in difficulty (per-method intervals overlap), but the meta-learner is 0.02 below
    the baseline on every user: the paired interval excludes 0 and the summary says behind."""
    from recsys.evaluation.cells import Cell, cell_results, paired_differences

    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.1, 0.9, size=200)
    users = np.array([f"u{i}" for i in range(200)])
    base, meta = Cell(), Cell()
    base.add({"ndcg@10": difficulty}, users)
    meta.add({"ndcg@10": difficulty - 0.02 + rng.normal(0, 0.005, 200)}, users)
    cells = {("random", "new_users", "5", "ease"): base, ("random", "new_users", "5", "meta-learner"): meta}
    rows = {r["method"]: r for r in cell_results(cells, n_items=10, n_boot=500)}
    a, b = rows["meta-learner"]["ndcg@10"], rows["ease"]["ndcg@10"]
    assert a["high"] > b["low"]  # the per-method intervals overlap
    (d,) = paired_differences(cells, "meta-learner", ["ease"], n_boot=500)
    assert d["users"] == 200 and d["high"] < 0 < d["high"] + 0.03
    assert abs(d["mean"] + 0.02) < 0.002

    report = {
        "methods": {"ease": {"kind": "baseline"}, "meta-learner": {"kind": "meta"}},
        "results": list(rows.values()),
        "paired": [d],
    }
    (row,) = comparisons(report)
    assert row["verdict"] == BEHIND and row["difference"] is d
    assert verdict(a, [b], lower_is_better=False) == LEVEL  # what the per-method reading said


def test_paired_differences_pair_users_by_id_not_by_position() -> None:
    from recsys.evaluation.cells import Cell, paired_differences

    base, meta = Cell(), Cell()
    base.add({"mae": np.array([1.0, 2.0, 3.0])}, np.array(["a", "b", "c"]))
    meta.add({"mae": np.array([2.5, 0.5, 1.5, 9.0])}, np.array(["c", "a", "b", "d"]))  # d: meta only
    (d,) = paired_differences(
        {("t", "new_users", "3", "b"): base, ("t", "new_users", "3", "m"): meta}, "m", ["b"], n_boot=200
    )
    assert d["users"] == 3
    assert d["mean"] == pytest.approx(((0.5 - 1.0) + (1.5 - 2.0) + (2.5 - 3.0)) / 3)


# ---- ablations -------------------------------------------------------------------------------------


def test_retrained_ablations_pair_with_the_default_first_seed_row_and_rescored_ones_with_the_default() -> (
    None
):
    from types import SimpleNamespace

    from recsys.evaluation.ablations import SEED0_LABEL
    from recsys.evaluation.cells import Cell
    from recsys.evaluation.runner import Evaluation

    users = np.array([f"u{i}" for i in range(50)])
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.6, 50)
    names = {
        "meta-learner": ("meta", base),
        f"meta-learner ({SEED0_LABEL})": ("ablation", base + 0.1),
        "meta-learner (without item-item blend)": ("ablation", base + 0.1 - 0.05),  # seed 0: 0.05 below its reference
        "meta-learner (no adaptation)": ("ablation", base - 0.2),
    }  # fmt: skip
    cells = {}
    for name, (_, values) in names.items():
        cells[("random", "new_users", "5", name)] = Cell()
        cells[("random", "new_users", "5", name)].add({"ndcg@10": values}, users)
    ev = SimpleNamespace(
        methods_meta={n: {"kind": k} for n, (k, _) in names.items()},
        model_name="meta-learner",
        cells=cells,
        s=SimpleNamespace(n_boot=200),
    )
    rows = {r["variant"]: r for r in Evaluation.paired_ablations(ev)}
    assert set(rows) == {"meta-learner (without item-item blend)", "meta-learner (no adaptation)"}
    blend = rows["meta-learner (without item-item blend)"]
    assert blend["reference"] == f"meta-learner ({SEED0_LABEL})" and blend["mean"] == pytest.approx(-0.05)
    plain = rows["meta-learner (no adaptation)"]
    assert plain["reference"] == "meta-learner" and plain["mean"] == pytest.approx(-0.2)
    assert plain["high"] < 0 and plain["users"] == 50


def test_the_ablation_table_counts_the_K_where_a_variant_is_resolved_worse_and_marks_unpaired_reports(
    tmp_path: Path,
) -> None:
    from pipelines.benchmark_summary import ablation_rows

    def d(k: str, metric: str, mean: float, half: float) -> dict:
        return {"variant": "meta-learner (no adaptation)", "reference": "meta-learner", "protocol": "random",
                "scenario": "new_users", "k": k, "metric": metric, "users": 189} | _c(mean, half)  # fmt: skip

    report = fake_report() | {
        "paired_ablations": [
            d("3", "ndcg@10", -0.05, 0.01),
            d("5", "ndcg@10", -0.01, 0.02),
            d("5", "mae", 0.03, 0.01),
        ]
    }
    (row,) = ablation_rows(report)
    assert row["paired"] and row["metrics"]["nDCG@10"] == {
        "mean": pytest.approx(-0.03),
        "n": 2,
        "worse": 1,
        "better": 0,
        "same": False,
    }
    assert row["metrics"]["MAE"]["worse"] == 1  # a higher MAE is worse
    write_fake_suite(tmp_path, report)
    write_summaries(tmp_path, readme=None, parts=benchmark.select("ml-100k/random"))
    text = (tmp_path / "README.md").read_text()
    assert "| no adaptation | default | random | +0.030 (worse 1, better 0 of 1) |" in text

    zero = report | {"paired_ablations": [d("3", "mae", 0.0, 0.0), d("5", "mae", 0.0, 0.0)]}
    assert ablation_rows(zero)[0]["metrics"]["MAE"]["same"]  # shown as "same": the variant cannot move it

    (unpaired,) = ablation_rows(fake_report())  # the old report: plain differences of means, no counts
    assert not unpaired["paired"] and unpaired["metrics"]["nDCG@10"]["mean"] == pytest.approx(0.9 - 0.49)
    assert unpaired["metrics"]["nDCG@10"]["worse"] is None


def test_a_parts_machine_record_names_the_cpu_and_torchs_kernel_level() -> None:
    """Runs of one part on different machines may train slightly different weights (torch's float
    kernels can differ by CPU) and flip near-tied validation choices: the timing record names the CPU
    and the kernel level, so two runs can be told apart."""
    import torch

    from pipelines.benchmark import _machine

    machine = _machine()
    assert isinstance(machine["cpu"]["name"], str) and machine["cpu"]["name"]
    assert machine["torch_cpu_capability"] == str(torch.backends.cpu.get_cpu_capability())
    assert machine["cpus"] == os.cpu_count()  # what the summary's wall-time note reads
