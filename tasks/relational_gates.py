"""Gates for a synthetic database: keys that hold, families of the right size, and parent-child trends kept.

Per database: referential integrity and key uniqueness (must be exactly 1). Per relation: the cardinality shape
(1 - KS between the real and synthetic children-per-parent distributions, zero children included) and pair trends
across the join (every child column against every parent column), beside the two tables' own pair trends. Per
parent table: a classifier's detection AUC on parent rows with their children's aggregates (count, means, category
shares), which sees a family that is wrong as a whole even when each row looks right; it must beat the same
families hung from random parents (the no-link baseline), and the parent rows' AUC alone is shown beside it. Per table: column shapes and
pair trends; privacy: a copy ratio per table and on the joined rows. Real rows are the training rows here (a
database has no holdout split yet), so these are fit checks.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.schemas.inference import infer_column
from synthgate.schemas.relations import DatabaseSchema, Relation
from synthgate.schemas.table import ColumnKind, TableSchema
from synthgate.tasks.distance import NUMERIC_KINDS
from synthgate.tasks.fidelity import column_shapes, detection_auc, ks_complement, pair_trends
from synthgate.tasks.privacy import row_keys
from synthgate.tasks.relational import SyntheticDatabase, children_counts, key_columns

logger = logging.getLogger(__name__)

CARDINALITY_MIN = 0.85
JOINED_PAIRS_MIN = 0.80  # the single-table pair-trends default
COPY_RATIO_MAX = 1.5  # the single-table exact-match ratio default
FAMILY_MARGIN = 0.02  # families must be told apart less well than random-parent families, by more than noise
FAMILY_FLOOR = 0.60  # below this AUC families pass whatever the baseline: where random parents are not told apart
MAX_ROWS = 20_000  # rows per side for the joined and per-table scores: bounds their cost on large tables
TOP_SHARES = 5  # category shares per child column in a family's aggregates


def _schema(frame: pd.DataFrame, name: str) -> TableSchema:
    return TableSchema(name=name, columns=[infer_column(str(c), frame[c]) for c in frame.columns], n_rows=len(frame))


def _rows(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    if len(frame) <= MAX_ROWS:
        return frame
    return frame.sample(MAX_ROWS, random_state=seed)


def _values(series: pd.Series) -> pd.Series:
    """Key values as one comparable type (an Int64 copy of a float key is the same key)."""
    values = series.dropna()
    if pd.api.types.is_numeric_dtype(values):
        return values.astype("float64")
    return values.astype(str)


def integrity(syn: SyntheticDatabase) -> tuple[float, dict[str, float]]:
    """Share of non-missing foreign keys found in their parent, per relation; the value is the smallest."""
    parts = {}
    for rel in syn.schema.relations:
        child = _values(syn.tables[rel.child][rel.columns[0]])
        parent = set(_values(syn.tables[rel.parent][rel.parent_columns[0]]))
        parts[rel.name] = float(child.isin(parent).mean()) if len(child) else 1.0
    return (min(parts.values()) if parts else 1.0), parts


def key_uniqueness(syn: SyntheticDatabase) -> tuple[float, dict[str, float]]:
    """Share of primary-key values that are present and unique, per table; the value is the smallest."""
    parts = {}
    for table, frame in syn.tables.items():
        for pk in syn.schema.primary_key(table):
            values = frame[pk]
            parts[f"{table}.{pk}"] = (
                float((values.notna() & ~values.duplicated(keep=False)).mean()) if len(frame) else 1.0
            )
    return (min(parts.values()) if parts else 1.0), parts


def cardinality_shape(rel: Relation, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame]) -> float:
    """1 - KS between real and synthetic children-per-parent counts (zero children included)."""
    counts = [
        children_counts(_values_index(t[rel.parent][rel.parent_columns[0]]), _values(t[rel.child][rel.columns[0]]))
        for t in (real, synthetic)
    ]
    return ks_complement(counts[0].astype(float), counts[1].astype(float))


def _values_index(series: pd.Series) -> pd.Series:
    return series.astype("float64") if pd.api.types.is_numeric_dtype(series) else series.astype(str)


def _joined(rel: Relation, tables: dict[str, pd.DataFrame], schema: DatabaseSchema) -> pd.DataFrame:
    """Child rows with their parent's non-key columns (prefixed `parent.`); children with a missing key dropped."""
    child = tables[rel.child]
    parent = tables[rel.parent]
    parent_values = parent.drop(columns=key_columns(schema, rel.parent)).add_prefix(f"{rel.parent}.")
    parent_values.index = _values_index(parent[rel.parent_columns[0]]).to_numpy()
    keys = child[rel.columns[0]]
    kept = keys.notna().to_numpy()
    left = child.drop(columns=key_columns(schema, rel.child))[kept].reset_index(drop=True)
    right = parent_values.reindex(_values_index(keys[kept]).to_numpy()).reset_index(drop=True)
    return pd.concat([left, right], axis=1)


def _joined_schema(rel: Relation, syn: SyntheticDatabase, n_rows: int) -> TableSchema:
    """Kinds from each table alone: a parent's name column repeats across the join and would read as a category."""
    child_schema = _schema(syn.real[rel.child].drop(columns=key_columns(syn.schema, rel.child)), rel.child)
    parent_real = syn.real[rel.parent].drop(columns=key_columns(syn.schema, rel.parent))
    parent_cols = [
        c.model_copy(update={"name": f"{rel.parent}.{c.name}"}) for c in _schema(parent_real, rel.parent).columns
    ]
    return TableSchema(name=rel.name, columns=[*child_schema.columns, *parent_cols], n_rows=n_rows)


def joined_pair_trends(rel: Relation, syn: SyntheticDatabase, *, seed: int = 0) -> tuple[float | None, float | None]:
    """Pair trends over child x parent column pairs on the join, and the mean of the two tables' own pair trends."""
    real = _rows(_joined(rel, syn.real, syn.schema), seed)
    fake = _rows(_joined(rel, syn.tables, syn.schema), seed)
    if real.empty or fake.empty:
        return None, None
    schema = _joined_schema(rel, syn, len(real))
    parent = f"{rel.parent}."
    cross = {
        k: v
        for k, v in pair_trends(real, fake, schema).parts.items()
        if k.split(" | ")[1].startswith(parent) and not k.split(" | ")[0].startswith(parent)
    }
    own = [v for v in (table_scores(t, syn, seed=seed)[1] for t in (rel.child, rel.parent)) if v is not None]
    return (float(np.mean(list(cross.values()))) if cross else None), (float(np.mean(own)) if own else None)


def copy_ratio(real: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema, *, seed: int = 0) -> float | None:
    """Share of synthetic rows equal to a row of one random half of the real rows, over the other half's share.

    A database run has no holdout split yet; the second half of the real rows plays the holdout: how often fresh real
    rows repeat the reference half (smoothed: (k + 1) / (n + 1), as `tasks.privacy.exact_match_ratio`). Near 1: no
    more copying than the data's own repeats; a sampler returning real rows scores about 1 / that rate.
    """
    if not schema.modelled or len(real) < 2 or synthetic.empty:
        return None
    keys = row_keys(real, schema)
    half = np.random.default_rng(seed).permutation(len(keys))
    reference, fresh = keys[half[: len(keys) // 2]], keys[half[len(keys) // 2 :]]
    hits = float(np.isin(row_keys(synthetic, schema), reference).mean())
    return hits / ((int(np.isin(fresh, reference).sum()) + 1) / (len(fresh) + 1))


def joined_copy_ratio(rel: Relation, syn: SyntheticDatabase, *, seed: int = 0) -> float | None:
    real = _rows(_joined(rel, syn.real, syn.schema), seed)
    fake = _rows(_joined(rel, syn.tables, syn.schema), seed)
    return copy_ratio(real, fake, _joined_schema(rel, syn, len(real)))


def table_scores(
    table: str, syn: SyntheticDatabase, *, seed: int = 0
) -> tuple[float | None, float | None, float | None]:
    """Column shapes, pair trends and copy ratio of one table's non-key columns, real vs synthetic."""
    drop = key_columns(syn.schema, table)
    real = _rows(syn.real[table].drop(columns=drop), seed)
    fake = _rows(syn.tables[table].drop(columns=drop), seed)
    if real.shape[1] == 0:
        return None, None, None
    schema = _schema(real, table)
    if not schema.modelled:
        return None, None, None
    shapes, pairs = column_shapes(real, fake, schema).value, pair_trends(real, fake, schema).value
    return shapes, pairs, copy_ratio(real, fake, schema)


def family_frame(parent: str, tables: dict[str, pd.DataFrame], schema: DatabaseSchema, real: dict) -> pd.DataFrame:
    """Parent rows with, per relation, their children's count, numeric means and top category shares."""
    frame = tables[parent].drop(columns=key_columns(schema, parent)).reset_index(drop=True)
    for rel in schema.children_of(parent):
        keys = _values_index(tables[parent][rel.parent_columns[0]]).reset_index(drop=True)
        child = tables[rel.child]
        fk = _values_index(child[rel.columns[0]])
        prefix = f"{rel.child}.{rel.columns[0]}"
        frame[f"{prefix}.count"] = children_counts(keys, fk)
        values = child.drop(columns=key_columns(schema, rel.child))
        for col in values.columns:
            kind = infer_column(str(col), real[rel.child][col]).kind
            if kind in NUMERIC_KINDS and pd.api.types.is_numeric_dtype(values[col]):
                means = pd.to_numeric(values[col], errors="coerce").groupby(fk.to_numpy()).mean()
                frame[f"{prefix}.mean({col})"] = keys.map(means).to_numpy()
            elif kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
                for level in real[rel.child][col].astype(str).value_counts().index[:TOP_SHARES]:
                    hit = (values[col].astype(str) == level).astype(float)
                    frame[f"{prefix}.share({col}={level})"] = keys.map(hit.groupby(fk.to_numpy()).mean()).to_numpy()
    return frame


def _random_parents(parent: str, syn: SyntheticDatabase, seed: int) -> dict[str, pd.DataFrame]:
    """The synthetic tables with every child of `parent` hung from a parent drawn at random: the no-link baseline."""
    rng = np.random.default_rng(seed)
    tables = dict(syn.tables)
    for rel in syn.schema.children_of(parent):
        child = tables[rel.child].copy()
        keys = syn.tables[parent][rel.parent_columns[0]].to_numpy()
        present = child[rel.columns[0]].notna().to_numpy()
        values = child[rel.columns[0]].astype(object).to_numpy().copy()
        values[present] = rng.choice(keys, int(present.sum()))
        child[rel.columns[0]] = values
        tables[rel.child] = child
    return tables


def family_detection(parent: str, syn: SyntheticDatabase, *, seed: int = 0) -> tuple[float | None, float, float]:
    """Detection AUC on parent rows with their children's aggregates; the same with children hung from random parents;
    and on the parent rows alone (0.5: indistinguishable).

    The random-parent AUC is the bar: families no more real than random assignment mean the link was lost, as an
    independent-marginals sampler is the bar for one table. The parent rows alone say how much of the AUC is the
    parent table's own realism, which the per-table checks judge.
    """
    real = family_frame(parent, syn.real, syn.schema, syn.real)
    fake = family_frame(parent, syn.tables, syn.schema, syn.real)
    schema = _schema(real, parent)
    if not schema.modelled:
        return None, 1.0, 0.5
    shuffled = family_frame(parent, _random_parents(parent, syn, seed), syn.schema, syn.real)
    own = schema.model_copy(update={"columns": [c for c in schema.columns if c.name in syn.real[parent].columns]})
    alone = detection_auc(real, fake, own, seed=seed).value if own.modelled else None
    baseline = detection_auc(real, shuffled, schema, seed=seed).value
    return detection_auc(real, fake, schema, seed=seed).value, baseline, 0.5 if alone is None else alone


def judge_database(syn: SyntheticDatabase, *, seed: int = 0) -> GateResult:
    """Every database metric with its threshold and verdict (see the module docstring)."""
    metrics = []
    value, parts = integrity(syn)
    metrics.append(
        MetricResult.judge("referential integrity", "fidelity", value, 1.0, "min",
                           "share of foreign keys found in their parent (smallest relation)", parts)
    )  # fmt: skip
    value, parts = key_uniqueness(syn)
    metrics.append(
        MetricResult.judge("key uniqueness", "fidelity", value, 1.0, "min",
                           "share of primary keys present and unique (smallest table)", parts)
    )  # fmt: skip
    for rel in syn.schema.relations:
        metrics.append(
            MetricResult.judge(f"cardinality shape: {rel.name}", "fidelity", cardinality_shape(rel, syn.real, syn.tables),
                               CARDINALITY_MIN, "min", "1 - KS of children per parent, zero included")
        )  # fmt: skip
        joined, own = joined_pair_trends(rel, syn, seed=seed)
        metrics.append(
            MetricResult.judge(f"joined pair trends: {rel.name}", "fidelity", joined, JOINED_PAIRS_MIN, "min",
                               "pair trends of child x parent columns on the join", {"tables' own": own or 0.0})
        )  # fmt: skip
        metrics.append(
            MetricResult.judge(f"joined copy ratio: {rel.name}", "privacy", joined_copy_ratio(rel, syn, seed=seed),
                               COPY_RATIO_MAX, "max", "joined rows equal to a real joined row, over the real ones' "
                               "own repeat rate")
        )  # fmt: skip
    for parent in dict.fromkeys(r.parent for r in syn.schema.relations):
        with_families, baseline, alone = family_detection(parent, syn, seed=seed)
        metrics.append(
            MetricResult.judge(f"family detection AUC: {parent}", "fidelity", with_families,
                               round(max(baseline - FAMILY_MARGIN, FAMILY_FLOOR), 3), "max",
                               "classifier AUC on parent rows + children's aggregates; must beat children hung "
                               "from random parents", {"random parents": baseline, "parent rows alone": alone})
        )  # fmt: skip
    for table in syn.tables:
        shapes, pairs, copies = table_scores(table, syn, seed=seed)
        metrics.append(MetricResult.judge(f"column shapes: {table}", "fidelity", shapes, 0.70, "min",
                                          "mean KS / TV complement over the table's columns"))  # fmt: skip
        metrics.append(MetricResult.judge(f"pair trends: {table}", "fidelity", pairs, 0.80, "min",
                                          "mean pair similarity over the table's columns"))  # fmt: skip
        metrics.append(MetricResult.judge(f"copy ratio: {table}", "privacy", copies, COPY_RATIO_MAX, "max",
                                          "rows equal to a real row, over the real rows' own repeat rate"))  # fmt: skip
    return GateResult(metrics=metrics, notes=["real rows are the training rows: a database has no holdout split yet"])
