"""Gates for a synthetic database: keys that hold, families of the right size, and parent-child trends kept.

Per database: referential integrity and key uniqueness (must be exactly 1). Per relation: the cardinality shape
(1 - KS between the real and synthetic children-per-parent distributions, zero children included) and pair trends
across the join (every child column against every parent column), beside the two tables' own pair trends. Per
parent table: a classifier's detection AUC on parent rows with their children's aggregates (count, means, category
shares), which sees a family that is wrong as a whole even when each row looks right; it must beat the same
families hung from random parents (the no-link baseline), and the parent rows' AUC alone is shown beside it. Per table: column shapes and
pair trends against every real row. Privacy, per table and on the joined parent-child rows, as `synthgate run`
judges one table: each table's model trained without a holdout of its real rows (`tasks.relational.holdout_rows`),
and the exact-match ratio and DCR share excess compare the synthetic rows' closeness to the training rows with the
holdout's; a joined row is a child row with its parent's columns, held out when its child row was.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from synthgate.schemas.gates import GateResult, GateThresholds, MetricResult
from synthgate.schemas.inference import infer_column
from synthgate.schemas.relations import DatabaseSchema, Relation
from synthgate.schemas.table import ColumnKind, TableSchema
from synthgate.tasks.composite import tuple_values
from synthgate.tasks.distance import NUMERIC_KINDS
from synthgate.tasks.fidelity import column_shapes, detection_auc, ks_complement, pair_trends
from synthgate.tasks.privacy import dcr_share_excess, exact_match_ratio, privacy_distances
from synthgate.tasks.relational import SyntheticDatabase, children_counts, key_columns

logger = logging.getLogger(__name__)

CARDINALITY_MIN = 0.85
JOINED_PAIRS_MIN = 0.80  # the single-table pair-trends default
EXACT_MATCH_MAX = GateThresholds().exact_match_ratio_max  # the single-table privacy defaults
DCR_EXCESS_MAX = GateThresholds().dcr_share_excess_max
PRIVACY_QUERIES = 1_000  # query rows per set in the nearest-record search, as `tasks.gates`
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


def _key(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A key's values as one comparable value per row (a tuple's parts joined), missing rows dropped."""
    return tuple_values(frame, columns).dropna()


def integrity(syn: SyntheticDatabase) -> tuple[float, dict[str, float]]:
    """Share of non-missing foreign keys found in their parent, per relation; the value is the smallest."""
    parts = {}
    for rel in syn.schema.relations:
        child = _key(syn.tables[rel.child], rel.columns)
        parent = set(_key(syn.tables[rel.parent], rel.parent_columns))
        parts[rel.name] = float(child.isin(parent).mean()) if len(child) else 1.0
    return (min(parts.values()) if parts else 1.0), parts


def key_uniqueness(syn: SyntheticDatabase) -> tuple[float, dict[str, float]]:
    """Share of primary keys (tuples for keys of several columns) present and unique, per table; the smallest."""
    parts = {}
    for table, frame in syn.tables.items():
        pk = syn.schema.primary_key(table)
        if pk:
            values = tuple_values(frame, pk)
            parts[f"{table}.{'+'.join(pk)}"] = (
                float((values.notna() & ~values.duplicated(keep=False)).mean()) if len(frame) else 1.0
            )
    return (min(parts.values()) if parts else 1.0), parts


def cardinality_shape(rel: Relation, real: dict[str, pd.DataFrame], synthetic: dict[str, pd.DataFrame]) -> float:
    """1 - KS between real and synthetic children-per-parent counts (zero children included)."""
    counts = [
        children_counts(tuple_values(t[rel.parent], rel.parent_columns), _key(t[rel.child], rel.columns))
        for t in (real, synthetic)
    ]
    return ks_complement(counts[0].astype(float), counts[1].astype(float))


def _joined(
    rel: Relation, tables: dict[str, pd.DataFrame], schema: DatabaseSchema, rows: np.ndarray | None = None
) -> pd.DataFrame:
    """Child rows (all, or those at `rows`) with their parent's non-key columns (prefixed `parent.`); children with
    a missing key dropped."""
    child = tables[rel.child] if rows is None else tables[rel.child].iloc[rows]
    parent = tables[rel.parent]
    parent_values = parent.drop(columns=key_columns(schema, rel.parent)).add_prefix(f"{rel.parent}.")
    parent_values.index = tuple_values(parent, rel.parent_columns).to_numpy()
    keys = tuple_values(child, rel.columns)
    kept = keys.notna().to_numpy()
    left = child.drop(columns=key_columns(schema, rel.child))[kept].reset_index(drop=True)
    right = parent_values.reindex(keys[kept].to_numpy()).reset_index(drop=True)
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


def holdout_privacy(
    train: pd.DataFrame, holdout: pd.DataFrame, synthetic: pd.DataFrame, schema: TableSchema, *, seed: int = 0
) -> tuple[float | None, float | None]:
    """Exact-match ratio and DCR share excess of `synthetic` against the training rows, judged by the holdout's own.

    The same two checks as `synthgate run`'s privacy gate (`tasks.privacy`): a sampler returning training rows
    scores an exact-match ratio of about 1 / (the holdout's own match rate) and a DCR share excess near 1.
    """
    if not schema.modelled or train.empty or holdout.empty or synthetic.empty:
        return None, None
    exact = exact_match_ratio(train, holdout, synthetic, schema).value
    distances = privacy_distances(train, holdout, synthetic, schema, seed=seed, max_queries=PRIVACY_QUERIES)
    return exact, dcr_share_excess(distances).value


def _split(frame: pd.DataFrame, held: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    mask = np.zeros(len(frame), dtype=bool)
    mask[held] = True
    return frame[~mask].reset_index(drop=True), frame[mask].reset_index(drop=True)


def table_privacy(table: str, syn: SyntheticDatabase, *, seed: int = 0) -> tuple[float | None, float | None]:
    """The table's non-key rows against its own training rows and holdout; n/a where the table kept no holdout."""
    held = syn.holdout.get(table, np.array([], dtype=np.int64))
    if held.size == 0:
        return None, None
    drop = key_columns(syn.schema, table)
    train, holdout = _split(syn.real[table].drop(columns=drop), held)
    schema = _schema(syn.real[table].drop(columns=drop), table)
    fake = _rows(syn.tables[table].drop(columns=drop), seed)
    return holdout_privacy(_rows(train, seed), holdout, fake, schema, seed=seed)


def joined_privacy(rel: Relation, syn: SyntheticDatabase, *, seed: int = 0) -> tuple[float | None, float | None]:
    """The joined rows' privacy: child rows with their parent's columns, held out where the child row was."""
    held = syn.holdout.get(rel.child, np.array([], dtype=np.int64))
    if held.size == 0:
        return None, None
    mask = np.zeros(len(syn.real[rel.child]), dtype=bool)
    mask[held] = True
    train = _rows(_joined(rel, syn.real, syn.schema, np.flatnonzero(~mask)), seed)
    holdout = _joined(rel, syn.real, syn.schema, np.flatnonzero(mask))
    fake = _rows(_joined(rel, syn.tables, syn.schema), seed)
    return holdout_privacy(train, holdout, fake, _joined_schema(rel, syn, len(train)), seed=seed)


def table_scores(table: str, syn: SyntheticDatabase, *, seed: int = 0) -> tuple[float | None, float | None]:
    """Column shapes and pair trends of one table's non-key columns, real vs synthetic."""
    drop = key_columns(syn.schema, table)
    real = _rows(syn.real[table].drop(columns=drop), seed)
    fake = _rows(syn.tables[table].drop(columns=drop), seed)
    if real.shape[1] == 0:
        return None, None
    schema = _schema(real, table)
    if not schema.modelled:
        return None, None
    return column_shapes(real, fake, schema).value, pair_trends(real, fake, schema).value


def family_frame(parent: str, tables: dict[str, pd.DataFrame], schema: DatabaseSchema, real: dict) -> pd.DataFrame:
    """Parent rows with, per relation, their children's count, numeric means and top category shares."""
    frame = tables[parent].drop(columns=key_columns(schema, parent)).reset_index(drop=True)
    for rel in schema.children_of(parent):
        keys = tuple_values(tables[parent], rel.parent_columns)
        child = tables[rel.child]
        fk = tuple_values(child, rel.columns)
        prefix = f"{rel.child}.{'+'.join(rel.columns)}"
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
        present = tuple_values(child, rel.columns).notna().to_numpy()
        picks = rng.integers(0, len(syn.tables[parent]), int(present.sum()))
        for col, pcol in zip(rel.columns, rel.parent_columns, strict=True):
            values = child[col].astype(object).to_numpy().copy()
            values[present] = syn.tables[parent][pcol].astype(object).to_numpy()[picks]
            child[col] = values
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
    for parent in dict.fromkeys(r.parent for r in syn.schema.relations):
        with_families, baseline, alone = family_detection(parent, syn, seed=seed)
        metrics.append(
            MetricResult.judge(f"family detection AUC: {parent}", "fidelity", with_families,
                               round(max(baseline - FAMILY_MARGIN, FAMILY_FLOOR), 3), "max",
                               "classifier AUC on parent rows + children's aggregates; must beat children hung "
                               "from random parents", {"random parents": baseline, "parent rows alone": alone})
        )  # fmt: skip
    for table in syn.tables:
        shapes, pairs = table_scores(table, syn, seed=seed)
        metrics.append(MetricResult.judge(f"column shapes: {table}", "fidelity", shapes, 0.70, "min",
                                          "mean KS / TV complement over the table's columns"))  # fmt: skip
        metrics.append(MetricResult.judge(f"pair trends: {table}", "fidelity", pairs, 0.80, "min",
                                          "mean pair similarity over the table's columns"))  # fmt: skip
    metrics += privacy_metrics(syn, seed=seed)
    small = sorted(t for t in syn.tables if syn.holdout.get(t) is None or syn.holdout[t].size == 0)
    notes = [
        "fidelity is measured against every real row; privacy against each table's holdout, real rows its model "
        "never saw (joined rows: held out with their child row)"
    ]
    if small:
        notes.append(f"tables {small} are too small to hold rows out: their models saw every row, privacy n/a")
    return GateResult(metrics=metrics, notes=notes)


def privacy_metrics(syn: SyntheticDatabase, *, seed: int = 0) -> list[MetricResult]:
    """The privacy gates: every table's rows and every relation's joined rows against their holdouts."""
    metrics = []
    for table in syn.tables:
        metrics += _privacy_metrics(table, "rows", table_privacy(table, syn, seed=seed))
    for rel in syn.schema.relations:
        metrics += _privacy_metrics(rel.name, "joined rows", joined_privacy(rel, syn, seed=seed))
    return metrics


def _privacy_metrics(what: str, rows: str, values: tuple[float | None, float | None]) -> list[MetricResult]:
    """The exact-match ratio and DCR share excess of one table or one join, judged by the single-table defaults."""
    exact, excess = values
    return [
        MetricResult.judge(f"exact-match ratio: {what}", "privacy", exact, EXACT_MATCH_MAX, "max",
                           f"synthetic {rows} equal to a training row / holdout {rows} equal to one"),
        MetricResult.judge(f"DCR share excess: {what}", "privacy", excess, DCR_EXCESS_MAX, "max",
                           f"synthetic {rows} nearer to training than holdout rows, above the no-copy baseline"),
    ]  # fmt: skip
