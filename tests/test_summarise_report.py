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


def test_ablation_table_averages_k_3_5_10_and_uses_the_k_a_protocol_has() -> None:
    """Regression: the ablation table was promised by the docstring but never printed, and a protocol
    with K = all (MeLU's) gave empty cells."""
    from pipelines.summarise_report import ablations

    kinds = {"meta-learner": {"kind": "meta"}, "meta-learner (no adaptation)": {"kind": "ablation"}}
    rows = []
    for k, base, meta, plain in (
        ("1", 1.0, 0.1, 0.1),
        ("3", 1.0, 0.9, 1.1),
        ("5", 0.8, 0.8, 0.88),
        ("10", 0.5, 0.45, 0.55),
    ):
        for m, mae in (("item-mean", base), ("meta-learner", meta), ("meta-learner (no adaptation)", plain)):
            rows.append(
                {"protocol": "random", "scenario": "new_users", "k": k, "method": m, "mae": _cell(mae)}
            )
    for m, mae in (("item-mean", 0.8), ("meta-learner", 0.72), ("meta-learner (no adaptation)", 0.88)):
        rows.append(
            {"protocol": "melu", "scenario": "user_cold_state", "k": "all", "method": m, "mae": _cell(mae)}
        )
    table = ablations({"results": rows, "methods": kinds}).splitlines()
    assert table[0].startswith("| variant | random MAE |") and "melu / user_cold_state MAE" in table[0]
    meta = next(line for line in table if line.startswith("| meta-learner |"))
    plain = next(line for line in table if line.startswith("| meta-learner (no adaptation) |"))
    # K = 1 is left out: mean of -10%, 0%, -10% = -6.7%; MeLU's K = all: -10%
    assert meta.split(" | ")[1] == "-6.7%" and "-10.0%" in meta.split(" | ")[4]
    assert plain.split(" | ")[1] == "+10.0%" and "+10.0%" in plain.split(" | ")[4]
