"""Model registry: aliases and the champion/challenger gate.

Registered versions carry tags ``recsys.val_mae_adapted`` (the gate value: validation-user MAE after
adaptation, lower is better; for implicit feedback, which has no ratings, minus the validation Recall@20,
named by ``recsys.gate_metric``), ``recsys.data_fingerprint`` and ``recsys.validation_set`` (a digest of the data, the held-out
users and the validation settings: two versions with the same digest were validated on the same users).
Promotion moves the ``champion`` alias; a version that does not beat the champion gets ``challenger``.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from recsys.utils.locations import resolve_tracking_uri

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_METRIC = "val_mae_adapted"
VERSION_METRIC_TAG = "recsys.val_mae_adapted"
VALIDATION_TAG = "recsys.validation_set"
GATE_RELATIVE_TOLERANCE = 1e-4
"""Below this fraction of the champion's gate value (in absolute value), a difference is a tie, not an
improvement: the challenger must beat the champion by more than ``max(min_improvement,
GATE_RELATIVE_TOLERANCE * |champion|)`` to be promoted (1e-4 of an MAE of 0.82 is 0.00008), so float
noise between two equally good runs (a 1e-9 difference) never moves the champion alias."""


def gate_value(summary: Any) -> tuple[float | None, str]:
    """(value, name) the gate compares, lower is better: validation MAE after adaptation, or for
    implicit feedback (no MAE) minus the validation Recall@20."""
    if summary is None:
        return None, GATE_METRIC
    if math.isfinite(summary.mae_adapted):
        return float(summary.mae_adapted), GATE_METRIC
    if math.isfinite(summary.recall20_adapted):
        return -float(summary.recall20_adapted), "neg_val_recall_at_20_adapted"
    return None, GATE_METRIC


def version_tags(rec: Any, data_fingerprint: str | None = None) -> dict[str, str]:
    """Tags a registered version carries so that a later gate can compare against it."""
    tags = {}
    value, metric = gate_value(rec.summary)
    if value is not None:
        tags[VERSION_METRIC_TAG] = repr(value)
        tags["recsys.gate_metric"] = metric
    holdout = rec.info.get("holdout") or {}
    t = rec.config.train
    key = (
        f"{data_fingerprint}:{holdout.get('protocol')}:{holdout.get('seed')}:{holdout.get('fingerprint')}:"
        f"{t.seed}:{t.validation_fraction}:{t.validation_support}:{t.validation_query}"
    )
    tags[VALIDATION_TAG] = hashlib.sha256(key.encode()).hexdigest()[:16]
    if data_fingerprint:
        tags["recsys.data_fingerprint"] = data_fingerprint
    if rec.info.get("dataset"):
        tags["recsys.dataset"] = str(rec.info["dataset"])
    return tags


def _client(tracking_uri: str | None):
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def set_alias(name: str, version: str | int, alias: str, tracking_uri: str | None = None) -> None:
    """Point ``models:/NAME@ALIAS`` at a version."""
    _client(tracking_uri).set_registered_model_alias(name, alias, str(version))


def version_by_alias(client: Any, name: str, alias: str):
    """The model version an alias points at, or None (no such model or alias)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def version_metric(client: Any, mv: Any, metric: str = GATE_METRIC) -> float | None:
    """A version's gate metric: its tag, else its run's metric."""
    raw = (mv.tags or {}).get(VERSION_METRIC_TAG)
    if raw is not None:
        try:
            return float(raw)
        except ValueError:
            pass
    if mv.run_id:
        try:
            value = client.get_run(mv.run_id).data.metrics.get(metric)
        except Exception:
            return None
        return None if value is None else float(value)
    return None


def required_improvement(champion_value: float, min_improvement: float = 0.0) -> float:
    """How much lower than the champion's a gate value must be to win: ``min_improvement``, and at
    least :data:`GATE_RELATIVE_TOLERANCE` of the champion's value."""
    return max(float(min_improvement), GATE_RELATIVE_TOLERANCE * abs(champion_value))


def show_pair(a: float, b: float) -> tuple[str, str]:
    """``a`` and ``b`` with as many decimals as it takes (4 at least, up to 12, else ``repr``) for two
    different values to print differently."""
    if a == b:
        return f"{a:.4f}", f"{b:.4f}"
    for digits in range(4, 13):
        sa, sb = f"{a:.{digits}f}", f"{b:.{digits}f}"
        if sa != sb:
            return sa, sb
    return repr(a), repr(b)


@dataclass
class GateDecision:
    """What the champion/challenger gate decided, and why."""

    name: str
    version: str
    promoted: bool
    alias: str
    reason: str
    challenger_value: float | None
    champion_version: str | None = None
    champion_value: float | None = None
    same_holdout: bool | None = None
    metric: str = GATE_METRIC

    def tags(self) -> dict[str, str]:
        return {f"recsys.gate.{k}": str(v) for k, v in asdict(self).items()}


def champion_challenger_gate(
    client: Any,
    name: str,
    version: str | int,
    challenger_value: float | None,
    *,
    min_improvement: float = 0.0,
    force: bool = False,
) -> GateDecision:
    """Promote ``version`` to ``champion`` only if its validation MAE beats the champion's by more than
    ``min_improvement`` and by more than :data:`GATE_RELATIVE_TOLERANCE` of the champion's value (or
    there is no champion yet, or ``force``); else alias it ``challenger``.

    The decision is written as ``recsys.gate.*`` tags on the version.
    """
    version = str(version)
    champ = version_by_alias(client, name, CHAMPION)
    champ_value = None
    same = None
    if force:
        promoted, reason = True, "forced promotion"
    elif challenger_value is None or not math.isfinite(challenger_value):
        promoted, reason = False, f"the challenger has no {GATE_METRIC} (no validation users)"
    elif champ is None:
        promoted, reason = True, "no champion yet"
    elif str(champ.version) == version:
        promoted, reason = True, "already the champion"
    else:
        champ_value = version_metric(client, champ)
        mine = client.get_model_version(name, version)
        a = (champ.tags or {}).get(VALIDATION_TAG)
        b = (mine.tags or {}).get(VALIDATION_TAG)
        same = None if a is None or b is None else a == b
        if champ_value is None:
            promoted, reason = False, f"champion v{champ.version} has no {GATE_METRIC} to compare with"
        else:
            needed = required_improvement(champ_value, min_improvement)
            gain = champ_value - challenger_value
            mine_s, champ_s = show_pair(challenger_value, champ_value)
            promoted = gain > needed
            if promoted:
                reason = (
                    f"{GATE_METRIC} {mine_s} < champion v{champ.version} {champ_s} "
                    f"(better by {gain:.3g} > {needed:.3g} required)"
                )
            else:
                reason = (
                    f"{GATE_METRIC} {mine_s} does not beat champion v{champ.version} {champ_s} "
                    f"(better by {gain:.3g}, not more than the {needed:.3g} required)"
                )
        if same is False:
            reason += " (validated on different users: the comparison is indicative)"
    alias = CHAMPION if promoted else CHALLENGER
    client.set_registered_model_alias(name, alias, version)
    decision = GateDecision(
        name,
        version,
        promoted,
        alias,
        reason,
        challenger_value,
        None if champ is None else str(champ.version),
        champ_value,
        same,
    )
    for k, v in decision.tags().items():
        client.set_model_version_tag(name, version, k, v)
    log.info("gate: %s v%s -> %s (%s)", name, version, alias, reason)
    return decision
