"""Batch pipeline: ingest -> features -> meta-train -> evaluate against baselines -> register -> gate.

One tracked MLflow run records every step (params, per-epoch metrics, evaluation metrics, the report,
the model). The model is registered under ``--registered-name``; the champion/challenger gate then
moves the ``champion`` alias to the new version only if its validation-user MAE (after adaptation,
lower is better) beats the current champion's by more than ``--min-improvement`` (and by more than
``recsys.tracking.registry.GATE_RELATIVE_TOLERANCE`` of its value: closer is a tie); otherwise the new
version gets the ``challenger`` alias. The decision is logged as ``recsys.gate.*`` tags on the run and
on the model version, and as ``gate.json``.

Examples::

    python -m pipelines.train_and_register --dataset ml-100k --registered-name movies
    python -m pipelines.train_and_register --dataset data/synth --config fast.toml \\
        --tracking-uri http://127.0.0.1:5000 --registered-name synth --baselines item-mean,popularity
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("pipelines.train_and_register")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pipelines.train_and_register",
        description=(__doc__ or "").split("\n\n")[0] + " Every step is tracked in one MLflow run.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Aliases: models:/NAME@champion serves; models:/NAME@challenger is the latest version "
        "that did not beat it.",
    )
    data = p.add_argument_group("data")
    data.add_argument("--dataset", help="Built-in dataset (ml-100k, ml-1m...), a spec .toml or a folder.")
    data.add_argument("--interactions", type=Path, help="An interaction file instead of --dataset.")
    data.add_argument("--spec", type=Path, help="A dataset spec (TOML).")
    train = p.add_argument_group("training")
    train.add_argument("--config", type=Path, help="Config file (TOML/JSON) with [model], [meta], [train].")
    train.add_argument("--epochs", type=int, help="Override train.epochs.")
    train.add_argument("--seed", type=int, help="Override train.seed.")
    train.add_argument(
        "--protocol",
        help="Which users are held out as new users: temporal, random, melu (default: the dataset's).",
    )
    ev = p.add_argument_group("evaluation")
    ev.add_argument(
        "--eval-protocols", help="Comma-separated evaluation protocols (default: the training protocol)."
    )
    ev.add_argument("--shots", default="1,3,5,10,20", help="Support sizes K (default 1,3,5,10,20).")
    ev.add_argument("--baselines", default="all", help="'all', 'none' or a comma-separated list.")
    ev.add_argument("--seeds", type=int, default=1, help="Evaluation seeds (default 1).")
    ev.add_argument(
        "--ablations",
        default="none",
        help="Meta-learner ablations (no-adaptation,1-step,first-order) or none.",
    )
    ev.add_argument("--no-tune", action="store_true", help="Use the baselines' default hyperparameters.")
    ev.add_argument("--skip-eval", action="store_true", help="Skip the evaluation step.")
    reg = p.add_argument_group("tracking and registry")
    reg.add_argument("--registered-name", help="Registered model name (default: recsys-<dataset>).")
    reg.add_argument(
        "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)."
    )
    reg.add_argument("--experiment", default=None, help="MLflow experiment (default: recsys).")
    reg.add_argument("--run-name", default=None, help="MLflow run name.")
    reg.add_argument(
        "--fallback-local", action="store_true", help="Track locally if the tracking server is unreachable."
    )
    reg.add_argument(
        "--min-improvement",
        type=float,
        default=0.0,
        help="Promote only if the validation MAE beats the champion's by more than this (default 0; "
        "a difference under 1e-4 of the champion's value is a tie in any case).",
    )
    reg.add_argument("--force-promote", action="store_true", help="Make the new version champion regardless.")
    p.add_argument("--out", type=Path, default=Path("runs/pipeline"), help="Folder for the model and report.")
    p.add_argument("-v", "--verbose", action="store_true", help="Log progress details.")
    return p


@dataclass
class PipelineResult:
    run_id: str | None
    model_uri: str | None
    registered_name: str
    version: str | None
    decision: Any = None
    report: dict[str, Any] | None = None
    model: Any = None
    timings: dict[str, float] = field(default_factory=dict)


def _csv(text: str | None, cast=str) -> list:
    return [cast(t.strip()) for t in (text or "").split(",") if t.strip()]


def run(args: argparse.Namespace, echo=print) -> PipelineResult:
    """Run the pipeline for parsed arguments (see :func:`build_parser`)."""
    from recsys.evaluation.report import write_report
    from recsys.evaluation.runner import EvalSettings, Evaluation
    from recsys.models.classical import BASELINES
    from recsys.tracking.mlflow_run import Tracker, TrackingOptions
    from recsys.tracking.params import run_params
    from recsys.tracking.registry import champion_challenger_gate, gate_value, version_tags
    from recsys.workflows import build_config, default_protocol, load_data, summary_text, train_model

    timings: dict[str, float] = {}
    t = time.perf_counter()

    def step(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 2)
        echo(f"[{name}] done in {now - t:.1f} s")
        t = now

    # 1. ingest
    ds = load_data(args.dataset, interactions=args.interactions, spec=args.spec)
    echo(f"[ingest] {ds.name}: {ds.interactions.height:,} interactions")
    step("ingest")
    cfg = build_config(args.config, epochs=args.epochs, seed=args.seed)
    protocol = args.protocol or default_protocol(ds)
    name = args.registered_name or f"recsys-{ds.name}"
    opts = TrackingOptions(
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        fallback_local=args.fallback_local,
        run_name=args.run_name,
    )
    out = Path(args.out)
    with Tracker(opts, kind="pipeline") as tr:
        echo(f"[track] MLflow run {tr.run_id} at {tr.uri}")
        params = run_params(ds, cfg, protocol=protocol, registered_name=name)
        tr.log_params(params)
        tr.set_tags(
            {"recsys.dataset": ds.name, "recsys.protocol": protocol, "recsys.pipeline": "train_and_register"}
        )
        step("track")

        # 2-3. build features and meta-train (the feature space is fitted on the training users)
        rec, _ = train_model(ds, cfg, protocol=protocol, callbacks=[tr.epoch_callback])
        space = rec.space
        tr.log_params(
            {
                "features.n_items": space.n_items,
                "features.user_fields": [f.name for f in space.user_encoder.fields],
                "features.item_fields": [f.name for f in space.item_encoder.fields],
            }
        )
        rec.save(out / "model")
        tr.log_training(rec)
        echo(summary_text(rec))
        step("train")

        # 4. evaluate against the baselines on the held-out new users
        report = None
        if not args.skip_eval:
            settings = EvalSettings(
                protocols=_csv(args.eval_protocols) or [protocol],
                shots=_csv(args.shots, int),
                baselines=list(BASELINES)
                if args.baselines == "all"
                else ([] if args.baselines == "none" else _csv(args.baselines)),
                seeds=args.seeds,
                ablations=[] if args.ablations == "none" else _csv(args.ablations),
                tune=not args.no_tune,
            )
            tr.log_params({f"eval.{k}": v for k, v in settings.__dict__.items()})
            ev = Evaluation(ds, settings, model=rec).run()
            report = write_report(ev, out / "report")
            tr.log_evaluation(report, out / "report")
            step("evaluate")

        # 5. register, 6. champion/challenger gate
        ref = tr.log_model(rec, name, version_tags(rec, params.get("data.fingerprint")))
        decision = None
        if ref is None or ref.version is None:
            echo(
                "[register] the model could not be registered now (tracking server unreachable): no promotion"
            )
        else:
            echo(f"[register] {ref.registry_uri} ({ref.model_uri})")
            value, _ = gate_value(rec.summary)
            decision = champion_challenger_gate(
                tr.client,
                name,
                ref.version,
                value,
                min_improvement=args.min_improvement,
                force=args.force_promote,
            )
            tr.set_tags(decision.tags())
            tr.log_dict(decision.__dict__, "gate.json")
            echo(f"[gate] version {decision.version} -> @{decision.alias}: {decision.reason}")
        step("register")
        tr.log_metrics({f"pipeline_seconds/{k}": v for k, v in timings.items()})
    return PipelineResult(
        tr.run_id,
        ref.model_uri if ref else None,
        name,
        ref.version if ref else None,
        decision,
        report,
        rec,
        timings,
    )


def main(argv: list[str] | None = None) -> int:
    from recsys.errors import RecsysError

    args = build_parser().parse_args(argv)
    if not (args.dataset or args.interactions or args.spec):
        build_parser().error("give --dataset, --interactions or --spec")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(args)
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
