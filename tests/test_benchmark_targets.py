"""pipelines.benchmark_targets: issue 21's targets read from the suite's reports (no suite is run)."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.benchmark_summary import comparisons, write_summaries
from pipelines.benchmark_targets import MET, NOT_MET, PartRows, relative_gain, target_rows, targets_table
from tests.test_benchmark_suite import fake_report, write_fake_suite


def _row(
    k: str, metric: str, meta: float, best: float, scenario: str = "new_users", behind: bool = False
) -> dict:
    return {
        "scenario": scenario, "k": k, "metric": metric, "meta": {"mean": meta}, "best": {"mean": best},
        "best_method": "ease", "behind": behind,
        "difference": {"mean": meta - best, "low": meta - best - 0.01, "high": meta - best + 0.005},
    }  # fmt: skip


def _by_target(rows: list[dict], start: str) -> list[dict]:
    return [r for r in rows if r["target"].startswith(start)]


def test_a_single_behind_cell_fails_never_behind_and_is_named_with_its_paired_interval() -> None:
    rows = [_row("5", "MAE", 0.80, 0.81), _row("10", "Recall@20", 0.306, 0.319, behind=True)]
    clean = [_row("5", "MAE", 0.80, 0.81), _row("10", "Recall@20", 0.33, 0.319)]
    found = target_rows(
        [PartRows("ML-100k: temporal", "ml-100k", rows), PartRows("ML-100k: random", "ml-100k", clean)]
    )
    first, second = _by_target(found, "never behind")
    assert first["verdict"] == NOT_MET
    assert "1 of 2 cells behind: K = 10 Recall@20 -0.013 [-0.023, -0.008] against ease" in first["figure"]
    assert second["verdict"] == MET and second["figure"] == "0 of 2 cells behind"


def test_query_ndcg_cells_do_not_count_for_never_behind() -> None:
    rows = [_row("3", "query nDCG@3", 0.72, 0.74, behind=True), _row("3", "MAE", 0.85, 0.85)]
    (row,) = _by_target(target_rows([PartRows("ML-100k: temporal", "ml-100k", rows)]), "never behind")
    assert row["verdict"] == MET and row["figure"] == "0 of 1 cells behind"


def test_ahead_is_the_mean_over_k_3_5_10_of_the_gain_over_each_ks_best_baseline() -> None:
    rows = [
        _row("1", "Recall@20", 0.10, 0.50),  # K = 1 and 20 are left out of the mean
        _row("3", "Recall@20", 0.33, 0.30),  # +10 %
        _row("5", "Recall@20", 0.30, 0.30),  # 0 %
        _row("10", "Recall@20", 0.404, 0.40),  # +1 %
        _row("20", "Recall@20", 0.10, 0.50),
    ]
    mean, per_k = relative_gain(rows, "new_users", "Recall@20")
    assert [k for k, _ in per_k] == ["3", "5", "10"] and abs(mean - 11 / 3) < 1e-9
    (row,) = _by_target(target_rows([PartRows("ML-1M: temporal", "ml-1m", rows)]), "ahead: Recall@20")
    assert row["verdict"] == NOT_MET and row["figure"].startswith("+3.67 %")  # below the +5 % asked


def test_mae_must_be_two_percent_lower_and_a_gain_just_short_of_it_is_not_met() -> None:
    lower = [_row(k, "MAE", 0.7840, 0.8000) for k in ("3", "5", "10")]  # -2.0 %
    short = [_row(k, "MAE", 0.7845, 0.8000) for k in ("3", "5", "10")]  # -1.94 %
    found = target_rows([PartRows("a", "ml-1m", lower), PartRows("b", "ml-1m", short)])
    assert [r["verdict"] for r in _by_target(found, "ahead: MAE")] == [MET, NOT_MET]


def test_targets_apply_only_to_the_parts_the_issue_names() -> None:
    rows = [_row(k, "nDCG@10", 0.2, 0.4) for k in ("3", "5", "10")]
    found = target_rows([PartRows("ML-100k: random", "ml-100k", rows)])
    assert not _by_target(found, "ahead") and len(found) == 1


def test_melus_part_uses_its_new_users_scenario_with_its_one_k_and_the_absolute_levels() -> None:
    rows = [
        _row("all", "MAE", 0.691, 0.713, scenario="user_cold_state"),
        _row("all", "query nDCG@3", 0.785, 0.78, scenario="user_cold_state"),
        _row("all", "MAE", 0.60, 0.90, scenario="item_cold_state"),  # another scenario: not the headline
    ]
    found = target_rows([PartRows("MeLU: melu", "melu", rows)])
    (mae,) = _by_target(found, "ahead: MAE")
    assert mae["part"] == "MeLU: melu, user_cold_state" and mae["figure"] == "-3.09 %"
    assert _by_target(found, "MAE ≤ 0.70")[0]["verdict"] == MET
    assert _by_target(found, "query nDCG@3 ≥ 0.79")[0]["verdict"] == NOT_MET


def test_a_part_not_run_has_ahead_rows_that_say_so_and_no_never_behind_row() -> None:
    found = target_rows([PartRows("Gowalla: random", "gowalla", None)])
    assert found and all(r["verdict"] == "not run yet" for r in found)


def test_the_summary_counts_the_targets_met_from_the_reports(tmp_path: Path) -> None:
    report = fake_report()  # the meta-learner is behind on MAE
    assert any(r["behind"] for r in comparisons(report))
    out = tmp_path / "docs" / "benchmarks"
    write_fake_suite(out, report)
    write_summaries(out, None)
    text = (out / "README.md").read_text()
    lines = targets_table([PartRows("MovieLens-100k: random", "ml-100k", comparisons(report))])
    assert "(0 of 1 met" in lines[0]
    assert lines[-1] in text and "K = 5 MAE" in lines[-1] and NOT_MET in lines[-1]


def test_the_table_links_what_was_tried_from_the_readme_and_from_the_summary_alike(tmp_path: Path) -> None:
    out = tmp_path / "docs" / "benchmarks"
    write_fake_suite(out)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- benchmark-summary:start -->\n<!-- benchmark-summary:end -->\n")
    write_summaries(out, readme)
    assert "[targets.md](docs/benchmarks/targets.md)" in readme.read_text()
    assert "[targets.md](targets.md)" in (out / "README.md").read_text()


def test_every_record_the_targets_page_cites_exists() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "targets.md"
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text())
    assert links and all((page.parent / link).exists() for link in links), links


def test_every_part_the_targets_name_is_a_suite_entry_with_that_scenario() -> None:
    """A renamed suite entry would otherwise drop its targets from the table without a word."""
    from pipelines.benchmark import SUITE
    from pipelines.benchmark_targets import AHEAD_WHERE, LEVELS

    names = {e.name: e for e in SUITE}
    assert set(AHEAD_WHERE) <= set(names)
    assert {entry for entry, _, _ in LEVELS} <= set(names)
    assert all(AHEAD_WHERE[entry] == scenario for entry, scenario, _ in LEVELS)
