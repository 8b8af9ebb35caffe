"""Synthesise a whole database: parents first, then each parent's children, keys regenerated and every link kept.

How tables are linked (docs/decisions.md#relational-clusters):

- Every parent table's real rows are put in latent clusters (`tasks.clusters`), on its own columns, its children
  counts and its own parents' clusters, so a grandparent's character flows down the chain.
- A parent's training table gains one column per relation where it is referenced: how many children each row has
  (zero included). The parent's model learns those counts jointly with its columns.
- A child's training table gains one categorical column per foreign key: the cluster of the referenced parent
  (`__null__` where the key is missing, so nullable keys keep their missing share).
- One foreign key is the child's context: each synthetic parent gets exactly as many children as its generated count,
  drawn from the child model conditioned on that parent's cluster. The other foreign keys take the cluster the child
  model generated for them, and a parent of that cluster in proportion to its generated count for that relation, so
  each relation's children-per-parent shape and the joint with the child's columns are both kept.
- Primary keys are regenerated in the source's format and never equal a real key; foreign keys copy them. Keys of
  several columns are linked through a surrogate row key and restored after synthesis (`tasks.composite`).
- Each table's model trains without a holdout of its rows, which the privacy gates judge it against
  (docs/decisions.md#database-holdout).

Only one table's rows and model are being built at a time beside the tables already synthesised, so memory grows
with the database's size, not with the product of its tables.
"""

from __future__ import annotations

import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.relations import DatabaseSchema, Relation
from synthgate.tasks.clusters import ParentClusters
from synthgate.tasks.composite import flatten, restore
from synthgate.tasks.hierarchy import NO_PARENT, hierarchy_parents
from synthgate.tasks.keys import regenerate_key
from synthgate.tasks.relations import Database, table_order
from synthgate.tasks.select import SharedBudget, database_time_budget, describe_candidates, table_time_budget
from synthgate.tasks.siblings import STICKY_PURITY, sibling_purity, sticky_picks

logger = logging.getLogger(__name__)

NULL_LABEL = "__null__"
DEFAULT_MODEL = "auto"  # with a budget per table and one per database: docs/decisions.md#database-default-model
HOLDOUT_FRACTION = 0.2  # as `synthgate run`: real rows each table's model never sees, for its privacy checks
HOLDOUT_MIN_ROWS = 50  # a smaller table keeps every row for training; its privacy checks are then not computed


def parent_column(index: int) -> str:
    """The child-table column holding the referenced parent's cluster for relation `index`."""
    return f"sg_parent_cluster_{index}"


def count_column(index: int) -> str:
    """The parent-table column holding each row's number of children for relation `index`."""
    return f"sg_children_{index}"


@dataclass
class SyntheticDatabase:
    """The synthetic tables (source columns, order and dtypes) and what the gates need to judge them.

    Attributes:
        tables: synthetic rows per table.
        real: the checked real rows per table (orphans read as missing where a relation says so).
        schema: keys and relations.
        context: per child table, the relation its rows were generated under.
        models: the model family fitted per table (None: a table with nothing to model but its keys).
        seconds: fit + sample seconds per table.
        holdout: per table, the positions of the real rows its model never saw (none for small tables).
    """

    tables: dict[str, pd.DataFrame]
    real: dict[str, pd.DataFrame]
    schema: DatabaseSchema
    context: dict[str, str] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    holdout: dict[str, np.ndarray] = field(default_factory=dict)


def holdout_rows(n: int, seed: int) -> np.ndarray:
    """Sorted positions of the rows a table's model does not train on: `HOLDOUT_FRACTION` of them, none when small."""
    if n < HOLDOUT_MIN_ROWS:
        return np.array([], dtype=np.int64)
    return np.sort(np.random.default_rng(seed).permutation(n)[: round(n * HOLDOUT_FRACTION)])


def children_counts(parent: pd.Series, child: pd.Series) -> np.ndarray:
    """For each parent key, how many child rows reference it (zero included), in the parent's row order."""
    counts = child.dropna().value_counts()
    return parent.map(counts).fillna(0).to_numpy(dtype=np.int64)


def key_columns(schema: DatabaseSchema, table: str) -> list[str]:
    """Primary and foreign key columns of `table`: regenerated or copied, never modelled."""
    columns = list(schema.primary_key(table))
    columns += [c for r in schema.relations_of(table) for c in r.columns]
    return list(dict.fromkeys(columns))


def choose_context(relations: list[Relation], real: pd.DataFrame) -> Relation:
    """The foreign key a child's rows are generated under: the one whose parents are most individually told apart.

    Scored by distinct referenced parents times the non-missing share, so a flight hangs from its plane (thousands of
    parents) rather than its origin airport (three), and a mostly-missing key is not chosen.
    """

    def score(rel: Relation) -> float:
        values = real[rel.columns[0]]
        return values.nunique() * values.notna().mean()

    return max(relations, key=score)


def _fit_model(
    frame: pd.DataFrame,
    *,
    table: str,
    model: str,
    seed: int,
    options: dict[str, Any] | None,
    time_budget: float | None = None,
) -> Any:
    from synthgate.tasks.synthesizer import Synthesizer

    if frame.shape[1] == 0:
        return None
    return Synthesizer(model, seed=seed, model_options=options, name=table, time_budget=time_budget).fit(frame)


def _sample(synth: Any, n: int, *, seed: int, conditions: dict[str, Any] | None = None) -> pd.DataFrame:
    """`n` rows, conditioned when the model knows the condition's value; else drawn freely (a rare cluster)."""
    if n <= 0:
        return pd.DataFrame()
    if synth is None:
        return pd.DataFrame(index=range(n))
    if conditions:
        try:
            return synth.sample(n, conditions=conditions, seed=seed)
        except InvalidInputError as exc:  # the cluster was merged into the rare bucket, or is constant
            logger.info("relational: condition %s not usable (%s); drawing freely", conditions, exc)
    return synth.sample(n, seed=seed)


def _quota(pool: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` picks from `pool`, each member as often as its weight says (a shuffled quota, topped up at random)."""
    weights = np.clip(np.nan_to_num(weights), 0, None)
    if weights.sum() <= 0:
        weights = np.ones(len(pool))
    quota = np.repeat(pool, np.round(weights * n / weights.sum()).astype(np.int64))
    picks = rng.permutation(quota)[:n]
    if len(picks) < n:
        picks = np.concatenate([picks, rng.choice(pool, n - len(picks), p=weights / weights.sum())])
    return rng.permutation(picks)


def matched_counts(generated: np.ndarray, real: np.ndarray, n_out: int | None = None) -> np.ndarray:
    """The real counts' quantiles handed out in the order of the generated counts (ties broken at random upstream).

    The parent model says which parents have large families; the real counts say how large families are. A model
    fitted to a count column that is mostly zero with a few huge values (three New York airports own every departure)
    smears it, and handing children out by those smeared weights spreads them over every parent.
    """
    m = generated.size if n_out is None else n_out
    if m == 0 or real.size == 0:
        return np.zeros(m, dtype=np.int64)
    quantiles = np.sort(real)[np.minimum(((np.arange(m) + 0.5) / m * real.size).astype(np.int64), real.size - 1)]
    out = np.empty(m, dtype=np.int64)
    out[np.argsort(generated, kind="stable")] = quantiles
    return out


def fix_total(sizes: np.ndarray, target: int, rng: np.random.Generator) -> np.ndarray:
    """`sizes` moved to sum to `target`: children added or removed one at a time, in proportion to family size.

    Synthetic clusters are not exactly as large as the real ones, so matched counts miss the source's total by a
    few percent; scaling every family instead would shift the largest ones past their real neighbours.
    """
    sizes = sizes.copy()
    gap = target - int(sizes.sum())
    if gap == 0 or sizes.size == 0:
        return sizes
    if gap < 0:
        owners = rng.permutation(np.repeat(np.arange(sizes.size), sizes))[:-gap]
        return sizes - np.bincount(owners, minlength=sizes.size)
    weights = sizes / sizes.sum() if sizes.sum() > 0 else np.full(sizes.size, 1 / sizes.size)
    return sizes + np.bincount(rng.choice(sizes.size, gap, p=weights), minlength=sizes.size)


class _Builder:
    """Holds the per-table state while tables are synthesised in order (a parent's clusters and synthetic rows)."""

    def __init__(
        self,
        db: Database,
        *,
        scale: float,
        models: dict[str, str],
        seed: int,
        options: dict[str, Any] | None,
        overwritten: dict[str, list[str]] | None = None,
        budget: SharedBudget | None = None,
    ):
        self.db, self.schema = db, db.schema
        self.budget = budget or SharedBudget(database_time_budget([f.shape for f in db.tables.values()]))
        self.overwritten = overwritten or {}  # child columns a parent's key tuple overrides: never the context
        self.holdout: dict[str, np.ndarray] = {}
        self.scale, self.models, self.seed, self.options = scale, models, seed, options
        self.index = {id(r): i for i, r in enumerate(self.schema.relations)}
        self.clusters: dict[str, ParentClusters] = {}
        self.real_labels: dict[str, np.ndarray] = {}  # per parent table: its real rows' clusters
        self.synthetic: dict[str, pd.DataFrame] = {}  # with helper columns (counts) kept for the children
        self.synthetic_labels: dict[str, np.ndarray] = {}
        self.synthetic_distances: dict[str, np.ndarray] = {}  # per parent table: (n_synthetic, n_clusters)

    def family_sizes(self, rel: Relation) -> tuple[np.ndarray, np.ndarray]:
        """Children per synthetic parent for `rel`, and the cluster each parent stands for in that relation.

        Per cluster, the real cluster's counts are handed out in generated-count order.

        A cluster the parent model generated no row of (a few unique parents, merged away as rare categories) takes
        the synthetic parents nearest its centroid, as many as the real cluster has parents times the scale.
        """
        i = self.index[id(rel)]
        parent = self.synthetic[rel.parent]
        rng = np.random.default_rng(self.table_seed(rel.parent, f"sizes-{i}"))
        generated = pd.to_numeric(parent[count_column(i)], errors="coerce").fillna(0).to_numpy(dtype=float)
        generated = generated + rng.random(generated.size) * 1e-6  # random order among equal counts
        real_parent = self.db.tables[rel.parent]
        real = children_counts(real_parent[rel.parent_columns[0]], self.db.tables[rel.child][rel.columns[0]])
        real_labels, labels = self.real_labels[rel.parent], self.synthetic_labels[rel.parent].copy()
        sizes = np.zeros(generated.size, dtype=np.int64)
        cluster_labels = self.clusters[rel.parent].labels
        for j, label in enumerate(cluster_labels):
            if (labels == label).any() or not (real_labels == label).any():
                continue
            want = min(max(1, round(self.scale * int((real_labels == label).sum()))), labels.size)
            nearest = np.argsort(self.synthetic_distances[rel.parent][:, j], kind="stable")[:want]
            labels[nearest] = label
        for label in cluster_labels:
            members = np.flatnonzero(labels == label)
            sizes[members] = matched_counts(generated[members], real[real_labels == label])
        return fix_total(sizes, round(self.scale * int(real.sum())), rng), labels

    def table_seed(self, table: str, purpose: str) -> int:
        return (self.seed * 1_000_003 + zlib.crc32(f"{table}\0{purpose}".encode())) % (2**31)

    def training_frame(self, table: str) -> pd.DataFrame:
        """The table's non-key columns, its children counts and its parents' clusters."""
        real = self.db.tables[table]
        frame = real.drop(columns=key_columns(self.schema, table))
        for rel in self.schema.children_of(table):
            child = self.db.tables[rel.child][rel.columns[0]]
            frame[count_column(self.index[id(rel)])] = children_counts(real[rel.parent_columns[0]], child)
        for rel in self.schema.relations_of(table):
            if rel.parent == table and table not in self.real_labels:
                continue  # the table's own clusters come first (`build`)
            parent_keys = self.db.tables[rel.parent][rel.parent_columns[0]]
            lookup = pd.Series(self.real_labels[rel.parent], index=parent_keys.to_numpy())
            labels = real[rel.columns[0]].map(lookup)
            frame[parent_column(self.index[id(rel)])] = labels.fillna(NULL_LABEL).astype(str).to_numpy()
        return frame

    def build(self, table: str) -> tuple[pd.DataFrame, str | None, str | None]:
        """Fit and sample one table; returns its synthetic rows (source columns), context relation and model name."""
        real = self.db.tables[table]
        frame = self.training_frame(table)
        clusters = ParentClusters(seed=self.seed) if self.schema.children_of(table) else None
        if clusters is not None:  # its real rows' clusters, for its children (and for itself when self-referencing)
            self.real_labels[table] = clusters.fit(frame)
        plain = list(frame.columns)
        frame = self.training_frame(table)  # now with the manager's cluster when the table references itself
        itself = [r for r in self.schema.relations_of(table) if r.parent == table]
        relations = [r for r in self.schema.relations_of(table) if r.parent != table]
        candidates = [r for r in relations if r.columns[0] not in self.overwritten.get(table, [])]
        context = choose_context(candidates, real) if candidates else None
        options = dict(self.options or {})
        linked = context.parent if context is not None else (table if itself else None)
        model = self.models[table]
        if linked is not None and model in ("gmm", "auto") and "n_components" not in options:
            # one component per parent cluster at least: BIC on a few hundred rows keeps two or three components, and
            # the children of unlike parents then share one (docs/decisions.md#relational-clusters)
            wanted = len((clusters if linked == table else self.clusters[linked]).labels) + 1
            options["n_components"] = int(min(wanted, max(1, len(frame) // 10)))
        self.holdout[table] = holdout_rows(len(frame), self.table_seed(table, "holdout"))
        train = frame.drop(index=frame.index[self.holdout[table]]).reset_index(drop=True)
        budget = self.budget.take(table_time_budget(*train.shape)) if model == "auto" else None
        start = time.perf_counter()
        synth = _fit_model(train, table=table, model=model, seed=self.table_seed(table, "fit"), options=options,
                           time_budget=budget)  # fmt: skip
        if budget is not None and synth is not None:
            self.budget.spend(time.perf_counter() - start)
            logger.info("relational table=%s auto %s", table, describe_candidates(getattr(synth, "candidates_", [])))
        rows, keys = self._draw(table, synth, context)
        if clusters is not None:  # its synthetic rows in the real rows' clusters
            self.synthetic_labels[table] = clusters.predict(rows[plain])
            self.synthetic_distances[table] = clusters.distances(rows[plain])
            self.clusters[table] = clusters
        for rel in relations:
            if rel is not context:
                keys[rel.columns[0]] = self._assign(rel, rows, keys[context.columns[0]], context)
        keys.update({rel.columns[0]: pd.Series([None] * len(rows), dtype=object) for rel in itself})
        out = self._assemble(table, rows, keys)
        self.synthetic[table] = pd.concat([out, rows[[c for c in rows if c.startswith("sg_children_")]]], axis=1)
        for rel in itself:
            out[rel.columns[0]] = _as_dtype(self._hierarchy(rel, rows), real[rel.columns[0]].dtype)
            self.synthetic[table][rel.columns[0]] = out[rel.columns[0]]
        return out, (context.name if context else None), (synth.model_name_ if synth is not None else None)

    def _draw(self, table: str, synth: Any, context: Relation | None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The table's rows: a free draw for a root table, else each synthetic parent's children under its cluster."""
        real = self.db.tables[table]
        if context is None:
            n = max(1, round(self.scale * len(real)))
            return _sample(synth, n, seed=self.table_seed(table, "sample")).reset_index(drop=True), {}
        i = self.index[id(context)]
        parent = self.synthetic[context.parent]
        counts, labels = self.family_sizes(context)
        parent_keys = parent[context.parent_columns[0]].to_numpy()
        parts, fk = [], []
        groups = [*self.clusters[context.parent].labels, NULL_LABEL]
        for label in groups:
            if label == NULL_LABEL:
                n = round(self.scale * int(real[context.columns[0]].isna().sum()))
                members = np.array([], dtype=np.int64)
            else:
                members = np.flatnonzero(labels == label)
                n = int(counts[members].sum())
            if n == 0:
                continue
            seed = self.table_seed(table, f"sample-{label}")
            part = _sample(synth, n, seed=seed, conditions={parent_column(i): label} if synth is not None else None)
            parts.append(part.reset_index(drop=True))
            fk.append(np.repeat(parent_keys[members], counts[members]) if members.size else np.full(n, None))
        if not parts:
            raise InvalidInputError(
                f"table {table!r}: the synthetic {context.parent!r} rows have no children under {context.name}; "
                "nothing to generate. Fix: raise --scale, or check the relation"
            )
        rows = pd.concat(parts, ignore_index=True)
        order = np.random.default_rng(self.table_seed(table, "order")).permutation(len(rows))
        keys = {context.columns[0]: pd.Series(np.concatenate(fk), dtype=object).iloc[order].reset_index(drop=True)}
        return rows.iloc[order].reset_index(drop=True), keys

    def _assign(self, rel: Relation, rows: pd.DataFrame, families: pd.Series, context: Relation) -> pd.Series:
        """A non-context key: a parent of the generated cluster, in proportion to its family size; one per family
        of siblings when the real siblings share one (`tasks.siblings`)."""
        i = self.index[id(rel)]
        real = self.db.tables[rel.child]
        sticky = sibling_purity(real[context.columns[0]], real[rel.columns[0]]) >= STICKY_PURITY
        parent = self.synthetic[rel.parent]
        keys = parent[rel.parent_columns[0]].to_numpy()
        sizes, parent_labels = self.family_sizes(rel)
        weights = sizes.astype(float)
        generated = rows[parent_column(i)].astype(str).to_numpy() if parent_column(i) in rows else None
        if generated is None:  # constant in the real table: every row hangs from the one kind of parent
            generated = np.full(len(rows), self.real_labels[rel.parent][0])
        rng = np.random.default_rng(self.table_seed(rel.child, f"assign-{i}"))
        out = np.full(len(rows), None, dtype=object)
        for label in np.unique(generated):
            where = np.flatnonzero(generated == label)
            if label == NULL_LABEL:
                continue
            members = np.flatnonzero(parent_labels == label)
            if members.size == 0 or weights[members].sum() <= 0:  # a rare-bucket or unseen label: any parent
                members = np.arange(len(keys))
            if sticky:
                out[where] = keys[sticky_picks(families.to_numpy()[where], members, weights[members], rng)]
            else:
                out[where] = keys[_quota(members, weights[members], where.size, rng)]
        return pd.Series(out, dtype=object)

    def _hierarchy(self, rel: Relation, rows: pd.DataFrame) -> pd.Series:
        """A self-referencing key: each row hung from an earlier row of the generated cluster (`tasks.hierarchy`)."""
        i = self.index[id(rel)]
        keys = self.synthetic[rel.parent][rel.parent_columns[0]].to_numpy()
        sizes, labels = self.family_sizes(rel)
        column = parent_column(i)
        wanted = rows[column].astype(str).to_numpy() if column in rows else np.full(len(rows), labels[0])
        rng = np.random.default_rng(self.table_seed(rel.child, f"hierarchy-{i}"))
        # the source's share of roots, the rows generated as roots first, then those with the largest families: a
        # lone root (the CEO) is a rare category the model never draws
        real = self.db.tables[rel.child][rel.columns[0]]
        n_roots = min(len(rows), max(int(real.isna().any()), round(self.scale * int(real.isna().sum()))))
        rank = np.lexsort((-sizes, wanted != NULL_LABEL))
        roots = np.zeros(len(rows), dtype=bool)
        roots[rank[:n_roots]] = True
        parents = hierarchy_parents(wanted, labels, sizes, roots, rng)
        out = np.full(len(rows), None, dtype=object)
        out[parents != NO_PARENT] = keys[parents[parents != NO_PARENT]]
        return pd.Series(out, dtype=object)

    def _assemble(self, table: str, rows: pd.DataFrame, keys: dict[str, Any]) -> pd.DataFrame:
        """Source columns in source order and dtypes: modelled values, a fresh primary key, copied foreign keys."""
        real = self.db.tables[table]
        n = len(rows)
        for pk in self.schema.primary_key(table):
            keys[pk] = regenerate_key(pk, real[pk], n, seed=self.table_seed(table, f"key-{pk}"))
        out = {}
        for col in real.columns:
            if col in keys:
                values = pd.Series(keys[col]).reset_index(drop=True)
                out[col] = _as_dtype(values, real[col].dtype)
            else:
                out[col] = rows[col].reset_index(drop=True)
        return pd.DataFrame(out, index=range(n))


def _as_dtype(values: pd.Series, dtype: Any) -> pd.Series:
    """Foreign keys in the child's own dtype (a nullable int where keys may be missing)."""
    if pd.api.types.is_integer_dtype(dtype) and values.notna().all():
        return pd.to_numeric(values).astype(dtype)
    if pd.api.types.is_integer_dtype(dtype):
        return pd.array(values.where(values.notna(), None), dtype="Int64")
    if pd.api.types.is_float_dtype(dtype):
        return pd.to_numeric(values).astype(dtype)
    return values.astype(object).where(values.notna(), None)


def table_models(db: Database, default: str, manifest: dict[str, str]) -> dict[str, str]:
    """The family per table: the manifest's, else `default`; unknown tables and families named at once."""
    from synthgate.models.registry import model_names

    families = [*model_names(), "auto"]
    problems = [
        f"table {t!r} is not in the source (tables: {sorted(db.tables)})" for t in manifest if t not in db.tables
    ]
    named = {"--model": default, **{f"table {t!r}": m for t, m in manifest.items()}}
    problems += [
        f"{where}: unknown model {m!r}; choose one of {families}" for where, m in named.items() if m not in families
    ]
    if problems:
        raise InvalidInputError("model manifest:\n  - " + "\n  - ".join(problems))
    return {t: manifest.get(t, default) for t in db.tables}


def synthesize_database(
    db: Database,
    *,
    scale: float = 1.0,
    model: str = DEFAULT_MODEL,
    models: dict[str, str] | None = None,
    seed: int = 0,
    model_options: dict[str, Any] | None = None,
    time_budget: float | None = None,
) -> SyntheticDatabase:
    """Every table of a checked database (`tasks.relations.check_database`), parents first.

    Args:
        db: the real tables, keys and relations.
        scale: each root table's rows as a share of the real one; children follow from their parents' counts.
        model: the table family fitted per table (gmm, arn, cart, vae, gan, autoencoder, auto).
        models: a family per table, overriding `model` (the `--models` manifest, or `models:` in relations.yaml).
        seed: makes clusters, fits, draws and keys reproducible.
        model_options: hyperparameters passed to every table's model.
        time_budget: seconds that the tables fitted with `auto` share (default `select.database_time_budget`); each
            table takes its own share (`select.table_time_budget`) of what is left, and past it keeps its cheapest
            candidate.

    Raises:
        InvalidInputError: a non-positive scale, a manifest naming an unknown table or family, or a table the
            models cannot fit.
    """
    if scale <= 0:
        raise InvalidInputError(f"--scale {scale}: give a positive share of the source's size, e.g. 1 or 0.1")
    per_table = table_models(db, model, {**db.schema.models, **(models or {})})
    tables, flat_schema, plan = flatten(db.tables, db.schema)  # keys of several columns linked through one column
    flat = Database(tables=tables, schema=flat_schema, source=db.source)
    builder = _Builder(flat, scale=scale, models=per_table, seed=seed, options=model_options,
                       overwritten=plan.overwritten,
                       budget=None if time_budget is None else SharedBudget(time_budget))  # fmt: skip
    result = SyntheticDatabase(tables={}, real=db.tables, schema=db.schema)
    order = table_order(flat_schema, list(db.tables))
    for table in order:
        start = time.perf_counter()
        try:
            out, context, fitted = builder.build(table)
        except InvalidInputError as exc:
            raise InvalidInputError(f"table {table!r}: {exc}") from exc
        result.tables[table], result.models[table] = out, fitted
        if context:
            result.context[table] = plan.names.get(context, context)
        result.seconds[table] = round(time.perf_counter() - start, 2)
        logger.info("relational table=%s rows=%d seconds=%.2f", table, len(out), result.seconds[table])
    result.holdout = builder.holdout
    if not plan.empty:
        result.tables = restore(result.tables, order, db.tables, plan, seed=seed)
    return result
