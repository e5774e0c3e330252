"""Synthetic interaction logs with planted structure, for tests and scale benchmarks.

Users and items have latent factors partly driven by their side features (user occupation and age
group; item genres and category), item popularity follows a power law, every user has a join time
and rates in time order, and ratings follow ``global + item bias + <user, item> + noise`` rounded onto
the scale. Generation is vectorised and chunked, so tens of millions of interactions fit in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from recsys.data.dataset import Dataset
from recsys.data.schema import ITEM, RATING, TIMESTAMP, USER
from recsys.data.spec import DatasetSpec, FieldKind, FieldSpec, TableSpec
from recsys.data.tables import dedupe_interactions


@dataclass
class SyntheticConfig:
    """Size and structure of a synthetic log."""

    n_users: int = 1000
    """Number of users."""
    n_items: int = 500
    """Number of items."""
    n_interactions: int = 50_000
    """Target number of interactions (a few duplicate draws are dropped)."""
    n_factors: int = 8
    """Dimension of the planted latent factors."""
    feature_strength: float = 0.7
    """Share of the latent factors explained by side features (0: none, 1: all)."""
    popularity_exponent: float = 1.0
    """Zipf exponent of item popularity."""
    affinity: float = 1.5
    """How strongly users pick items they like (0: popularity only)."""
    n_genres: int = 12
    n_occupations: int = 10
    n_age_groups: int = 6
    rating_scale: tuple[int, int] = (1, 5)
    noise: float = 0.6
    """Standard deviation of rating noise."""
    implicit: bool = False
    """Omit ratings (implicit feedback)."""
    seed: int = 0


def make_synthetic(cfg: SyntheticConfig | None = None, **overrides) -> Dataset:
    """Generate a dataset in memory (see :class:`SyntheticConfig` for the knobs).

    Long on purpose: one generative story (user and item factors, features, planted structure, ratings,
    timestamps) that reads top to bottom; splitting it would scatter the shared random stream across helpers."""
    cfg = cfg or SyntheticConfig()
    for k, v in overrides.items():
        setattr(cfg, k, v)
    rng = np.random.default_rng(cfg.seed)
    d = cfg.n_factors
    s = cfg.feature_strength

    occ = rng.integers(0, cfg.n_occupations, cfg.n_users)
    age = rng.integers(0, cfg.n_age_groups, cfg.n_users)
    gender = rng.integers(0, 2, cfg.n_users)
    occ_f = rng.normal(0, 1, (cfg.n_occupations, d))
    age_f = rng.normal(0, 1, (cfg.n_age_groups, d))
    user_f = np.sqrt(s) * (occ_f[occ] + age_f[age]) / np.sqrt(2) + np.sqrt(1 - s) * rng.normal(
        0, 1, (cfg.n_users, d)
    )

    n_g = rng.integers(1, 4, cfg.n_items)
    genre_sets = [rng.choice(cfg.n_genres, k, replace=False) for k in n_g]
    genre_f = rng.normal(0, 1, (cfg.n_genres, d))
    item_content = np.stack([genre_f[g].mean(0) for g in genre_sets])
    category = rng.integers(0, 5, cfg.n_items)
    item_f = np.sqrt(s) * item_content + np.sqrt(1 - s) * rng.normal(0, 1, (cfg.n_items, d))
    item_bias = rng.normal(0, 0.4, cfg.n_items) + 0.15 * (category - 2)

    ranks = rng.permutation(cfg.n_items) + 1
    pop = 1.0 / ranks.astype(np.float64) ** cfg.popularity_exponent
    pop /= pop.sum()

    # interactions per user: heavy tailed, at least 5
    weights = rng.pareto(1.5, cfg.n_users) + 1
    per_user = np.maximum(5, np.round(weights / weights.sum() * cfg.n_interactions)).astype(np.int64)
    per_user = np.minimum(per_user, cfg.n_items)
    total = int(per_user.sum())
    users = np.repeat(np.arange(cfg.n_users), per_user)
    scale = 1.0 / np.sqrt(d)
    items = np.empty(total, dtype=np.int64)
    ratings = np.empty(total, dtype=np.float32)
    lo, hi = cfg.rating_scale
    mid = (lo + hi) / 2 + 0.5
    chunk = 1 << 20

    def draw(slots: np.ndarray) -> None:
        for start in range(0, len(slots), chunk):
            sl = slots[start : start + chunk]
            u = users[sl]
            cand = rng.choice(cfg.n_items, size=(len(u), 3), p=pop)
            aff = np.einsum("nd,nkd->nk", user_f[u], item_f[cand]) * scale
            pick = np.argmax(cfg.affinity * aff + rng.gumbel(size=aff.shape), axis=1)
            it = cand[np.arange(len(u)), pick]
            items[sl] = it
            score = mid + item_bias[it] + aff[np.arange(len(u)), pick] + rng.normal(0, cfg.noise, len(u))
            ratings[sl] = np.clip(np.round(score), lo, hi)

    slots = np.arange(total)
    for _ in range(6):  # re-draw repeated (user, item) pairs a few times, then drop what is left
        draw(slots)
        keys = users * cfg.n_items + items
        _, first = np.unique(keys, return_index=True)
        dup = np.ones(total, dtype=bool)
        dup[first] = False
        slots = np.nonzero(dup)[0]
        if len(slots) == 0:
            break

    join = rng.integers(1_500_000_000, 1_600_000_000, cfg.n_users)
    gaps = rng.exponential(3600.0, total).astype(np.int64) + 1
    order_in_user = np.arange(total) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    cum = np.cumsum(gaps)
    cum -= np.repeat(cum[np.cumsum(per_user) - per_user], per_user)
    times = join[users] + cum + order_in_user

    inter = {USER: users + 1, ITEM: items + 1, TIMESTAMP: times}
    if not cfg.implicit:
        inter[RATING] = ratings
    frame = dedupe_interactions(pl.DataFrame(inter))
    user_table = pl.DataFrame(
        {
            USER: np.arange(cfg.n_users) + 1,
            "occupation": [f"occ{o}" for o in occ],
            "age": [f"age{a}" for a in age],
            "gender": np.where(gender == 1, "F", "M"),
        }
    )
    item_table = pl.DataFrame(
        {
            ITEM: np.arange(cfg.n_items) + 1,
            "genre": ["|".join(f"g{g}" for g in sorted(gs)) for gs in genre_sets],
            "category": [f"c{c}" for c in category],
            "title": [f"Item {i + 1}" for i in range(cfg.n_items)],
        }
    )
    spec = synthetic_spec(cfg)
    items_parsed = item_table.with_columns(pl.col("genre").str.split("|"))
    ds = Dataset("synthetic", frame, spec, users=user_table, items=items_parsed)
    ds.truth = {"user_factors": user_f, "item_factors": item_f, "item_bias": item_bias}  # type: ignore[attr-defined]
    ds.raw_items = item_table  # type: ignore[attr-defined]
    return ds


def synthetic_spec(cfg: SyntheticConfig, fmt: str = "parquet") -> DatasetSpec:
    ext = "parquet" if fmt == "parquet" else "csv"
    return DatasetSpec(
        name="synthetic",
        interactions=TableSpec(path=f"interactions.{ext}"),
        users=TableSpec(
            path=f"users.{ext}",
            fields=[FieldSpec("occupation"), FieldSpec("age"), FieldSpec("gender")],
        ),
        items=TableSpec(
            path=f"items.{ext}",
            fields=[
                FieldSpec("genre", FieldKind.MULTI, separator="|"),
                FieldSpec("category"),
                FieldSpec("title", FieldKind.TEXT),
            ],
        ),
        rating_scale=None if cfg.implicit else (float(cfg.rating_scale[0]), float(cfg.rating_scale[1])),
        implicit=cfg.implicit,
        title_field="title",
        layout="synthetic",
        source=f"recsys synthetic generator (seed {cfg.seed})",
    )


def write_synthetic(ds: Dataset, out: str | Path, fmt: str = "parquet") -> Path:
    """Write the tables and a ``spec.toml`` so ``load_dataset(out)`` reads them back."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ext = "parquet" if fmt == "parquet" else "csv"
    items = getattr(ds, "raw_items", ds.items)
    for name, frame in (("interactions", ds.interactions), ("users", ds.users), ("items", items)):
        if frame is None:
            continue
        path = out / f"{name}.{ext}"
        tmp = path.with_suffix(path.suffix + ".tmp")
        if fmt == "parquet":
            frame.write_parquet(tmp)
        else:
            frame.write_csv(tmp)
        tmp.replace(path)
    rating = (
        "" if ds.implicit else f"rating_scale = [{ds.spec.rating_scale[0]:g}, {ds.spec.rating_scale[1]:g}]\n"
    )
    (out / "spec.toml").write_text(
        f'name = "synthetic"\nlayout = "synthetic"\ntitle_field = "title"\n{rating}'
        f"implicit = {'true' if ds.implicit else 'false'}\n\n"
        f'[interactions]\npath = "interactions.{ext}"\n\n'
        f'[users]\npath = "users.{ext}"\nfields = [{{ name = "occupation" }}, {{ name = "age" }}, {{ name = "gender" }}]\n\n'
        f'[items]\npath = "items.{ext}"\nfields = [\n  {{ name = "genre", kind = "multi", separator = "|" }},\n'
        f'  {{ name = "category" }},\n  {{ name = "title", kind = "text" }},\n]\n'
    )
    return out
