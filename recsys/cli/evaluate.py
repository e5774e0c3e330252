"""Evaluation commands: ``evaluate`` (the meta-learner against classical baselines) and
``evaluate-onboarding`` (onboarding strategies on simulated new users)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from recsys.cli.common import check_names, csv_list, echo_run, int_list, known_names, load_model
from recsys.cli.options import ConfigOpt, DataSource, ModelUriHelp, Tracking, TrackingUriOpt

if TYPE_CHECKING:
    from recsys.evaluation.runner import EvalSettings

ThresholdOpt = Annotated[float, typer.Option(help="Relevance threshold for catalogue metrics.")]


def evaluate(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help="Trained model (folder, runs:/RUN_ID/model, models:/NAME@alias); its config trains other splits.",
        ),
    ] = None,
    *,
    source: DataSource,
    protocol: Annotated[
        str, typer.Option(help="Comma-separated protocols: {names:protocols}.")
    ] = "temporal,random",
    shots: Annotated[str, typer.Option(help="Comma-separated support sizes K.")] = "1,3,5,10,20",
    baselines: Annotated[
        str, typer.Option(help="'all', 'none' or a comma-separated list of baselines: {names:baselines}.")
    ] = "all",
    seeds: Annotated[int, typer.Option(help="Seeds to average over (splits, initialisation, draws).")] = 3,
    ablations: Annotated[
        str,
        typer.Option(
            help="Meta-learner variants: {names:rescored} (re-scored); {names:retrained} (retrained on seed 0); or none."
        ),
    ] = "no-adaptation,5-steps,second-order",
    config: ConfigOpt = None,
    threshold: ThresholdOpt = 4.0,
    tune: Annotated[bool, typer.Option(help="Tune baseline grids on validation users.")] = True,
    nested: Annotated[
        bool,
        typer.Option(
            "--nested",
            help="Model selection: apply the protocol again inside each split's training users and report on those pseudo-new users; the real new users are never touched (temporal, random).",
        ),
    ] = False,
    out: Annotated[Path, typer.Option("--out", help="Folder for report.json, report.md and plots.")] = Path(
        "reports/latest"
    ),
    tracking: Tracking,
) -> None:
    """Compare the meta-learner with classical baselines for new users, protocol by protocol and K by K.

    Writes report.json, report.md (tables with bootstrap intervals, best per column in bold) and PNG
    plots (cold-start curve, per-user error distribution) to --out.
    """
    from recsys.evaluation.report import markdown, write_report
    from recsys.evaluation.runner import Evaluation
    from recsys.tracking.params import run_params
    from recsys.workflows import build_config

    # every name is checked before loading any data
    settings = _eval_settings(protocol, shots, baselines, seeds, ablations, threshold, tune, nested)
    cfg = build_config(config) if config or model is None else None  # validated before the data too
    ds = source.load()
    rec = load_model(model, tracking.tracking_uri) if model else None
    if rec is not None:
        rec.check_dataset(ds)  # a model trained on another feature spec: a clear error, before any work
    with tracking.tracker("evaluate") as tr:
        echo_run(tr)
        if tr.active:
            eval_params = {f"eval.{k}": v for k, v in settings.__dict__.items()}
            tr.log_params(run_params(ds, cfg or rec.config, model=model, **eval_params))
        tr.set_tags({"recsys.dataset": ds.name, "recsys.model": model})
        ev = Evaluation(ds, settings, config=cfg, model=rec).run()
        report = write_report(ev, out)
        tr.log_evaluation(report, out)
        typer.echo(markdown(report))
        typer.echo(f"report written to {out}/report.md ({', '.join(report['plots'])})")


def _eval_settings(
    protocol: str,
    shots: str,
    baselines: str,
    seeds: int,
    ablations: str,
    threshold: float,
    tune: bool,
    nested: bool,
) -> EvalSettings:
    """The evaluation's settings, every name checked against the code's tables (one SpecError line)."""
    from recsys.evaluation.ablations import check_ablations
    from recsys.evaluation.runner import EvalSettings
    from recsys.models.classical import BASELINES

    known = known_names()
    protocols = check_names("--protocol", "protocol(s)", csv_list(protocol), known["protocols"])
    if baselines not in ("all", "none"):
        check_names("--baselines", "baseline(s)", csv_list(baselines), known["baselines"], " (or all, none)")
    ablation_list = [] if ablations == "none" else csv_list(ablations)
    check_ablations(ablation_list)
    shot_list = int_list("--shots", shots)
    baseline_list = (
        list(BASELINES) if baselines == "all" else ([] if baselines == "none" else csv_list(baselines))
    )
    return EvalSettings(
        protocols=protocols,
        shots=shot_list,
        baselines=baseline_list,
        seeds=seeds,
        threshold=threshold,
        ablations=ablation_list,
        tune=tune,
        nested=nested,
    )


def evaluate_onboarding_cmd(
    dataset: Annotated[str, typer.Option("--dataset", help="Built-in dataset, spec or folder.")] = "ml-100k",
    model: Annotated[
        str | None, typer.Option("--model", help="Take the config from this model (" + ModelUriHelp + ")")
    ] = None,
    config: ConfigOpt = None,
    protocol: Annotated[str, typer.Option(help="Which users are new: {names:protocols}.")] = "random",
    answers: Annotated[
        str, typer.Option(help="Budgets in answers: users answer until they gave K ratings.")
    ] = "3,5,10",
    questions: Annotated[
        str, typer.Option(help="Budgets in questions: users see the first N and answer those they can.")
    ] = "10,25,50",
    strategies: Annotated[
        str, typer.Option(help="Comma-separated strategies to compare: {names:strategies}.")
    ] = "evidence,popular,random",
    seeds: Annotated[int, typer.Option(help="Seeds (splits and training) to run.")] = 1,
    threshold: ThresholdOpt = 4.0,
    out: Annotated[Path, typer.Option("--out", help="Folder for onboarding.json and onboarding.md.")] = Path(
        "reports/onboarding"
    ),
    tracking_uri: TrackingUriOpt = None,
) -> None:
    """Compare onboarding strategies on simulated new users.

    Each new user answers the questions they can (the items of a random half of their ratings), and
    is scored on the other half: catalogue Recall@20 / nDCG@10 after K answers (however many
    questions that takes) and after the first N questions. Trains one model per seed on the
    protocol's training users; the table averages the seeds."""
    from recsys.evaluation.onboarding import evaluate_onboarding, markdown_table, summarise
    from recsys.utils.io import atomic_write_json, atomic_write_text
    from recsys.workflows import build_config, load_data, train_model

    known = known_names()  # names checked before loading any data
    check_names("--protocol", "protocol", [protocol], known["protocols"])
    strategy_names = check_names("--strategies", "strategy(ies)", csv_list(strategies), known["strategies"])
    answer_budgets, question_budgets = int_list("--answers", answers), int_list("--questions", questions)
    cfg = build_config(config) if config or model is None else load_model(model, tracking_uri).config
    ds = load_data(dataset)
    rows = []
    for seed in range(seeds):
        rec, _ = train_model(ds, cfg, protocol=protocol, seed=seed)
        rows += evaluate_onboarding(
            rec,
            ds,
            protocol=protocol,
            seed=seed,
            answers=tuple(answer_budgets),
            questions=tuple(question_budgets),
            strategies=tuple(strategy_names),
            threshold=threshold,
        )
    table = markdown_table(summarise(rows))
    atomic_write_json(out / "onboarding.json", {"dataset": ds.name, "rows": rows, "summary": summarise(rows)})
    atomic_write_text(out / "onboarding.md", f"# Onboarding strategies: {ds.name}\n\n{table}\n")
    typer.echo(table)
    typer.echo(f"written to {out}/onboarding.md and onboarding.json")
