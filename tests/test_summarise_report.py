"""pipelines.summarise_report: the README's tables from a report.json."""

from __future__ import annotations

from pipelines.summarise_report import summarise


def _cell(mean: float) -> dict:
    return {"mean": mean, "low": mean, "high": mean}


def test_zero_best_baseline_does_not_divide_by_zero() -> None:
    """New-item scenarios: every method's Recall@20 is 0, which crashed the relative difference."""
    rows = [
        {"protocol": "melu", "scenario": "item_cold_state", "k": "all", "method": m, "users": 3,
         "mae": _cell(mae), "recall@20": _cell(0.0)}
        for m, mae in (("item-mean", 0.95), ("meta-learner", 0.88))
    ]  # fmt: skip
    table = summarise({"results": rows, "methods": {"meta-learner": {"kind": "meta"}}})
    line = table.splitlines()[-1]
    assert line.startswith("| melu / item_cold_state | all |")
    assert "0.950 (item-mean) / **0.880** (-7.4%)" in line and "(n/a)" in line
