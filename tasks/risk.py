"""Attack-measured privacy risk: singling out, linkability and attribute inference, after Giomi et al. 2023.

"A Unified Framework for Quantifying Privacy Risk in Synthetic Data" (Giomi et al., PoPETs 2023; the `anonymeter`
package) measures risk by running an attack that uses only the synthetic data against two sets of real records: the
training records (which the synthesizer saw) and control records (the holdout, which it did not). Success on control
records is what an attacker gets from population-level patterns alone; the excess on training records is the privacy
leak:

    risk = (rate_train - rate_control) / (1 - rate_control)

Each rate carries a Wilson score interval (Wilson 1927), and the risk's interval takes the pessimistic and optimistic
ends of both. anonymeter itself is not a dependency (it pins numpy < 1.27); these are compact re-implementations:

- singling out: predicates built from synthetic rows (a random row's values on a few columns, as `col == v` for
  discrete columns and `col <= v` / `col >= v` for numbers) that isolate exactly one synthetic row; success when the
  predicate isolates exactly one real record. Train is subsampled to the control's size, so "exactly one" means the
  same thing on both.
- linkability: the columns are split in two halves held by two parties; a target is linked when its nearest synthetic
  neighbours on either half share a row.
- attribute inference: for a secret column, the attacker knows every other column, finds the nearest synthetic row and
  guesses its secret (exact for discrete columns, within 5% of the column's range for numbers).

Distances are Gower-style: numbers scaled by their range in the synthetic data (public), discrete values 0/1 mismatch.
The scores are information metrics: `MetricResult`s in the privacy group, with optional thresholds.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.gates import MetricResult
from synthgate.schemas.table import ColumnKind, TableSchema
from synthgate.tasks.distance import category_labels, numeric_values

logger = logging.getLogger(__name__)

DEFAULT_ATTACKS = 500  # targets per attack; CIs at 500 are about +-0.04
Z_95 = 1.959964
NUMERIC_TOLERANCE = 0.05  # inference on numbers: a guess within 5% of the range counts as correct
# The attacker's synthetic release is cut to this many random rows. Each attack compares success on training and
# control records against the same synthetic rows, so the cut weakens both sides alike; without it the nearest-row
# searches cost n_attacks x n_synthetic x n_columns and a million-row release takes tens of minutes.
MAX_SYNTHETIC_ROWS = 50_000
# Floats in one (query x reference block x column) distance block: cache-sized blocks ran twice as fast as 25M-float
# ones on the 300k x 30 bench (inference attack 6 s vs 10-15 s).
RISK_BLOCK_ELEMENTS = 2_000_000
GROW_COLUMNS = 3  # a singling-out predicate that still matches several synthetic rows may take this many more columns

DESCRIPTIONS = {
    "singling_out_risk": "Giomi et al. 2023: excess success of synthetic-derived predicates isolating one training vs one control record",
    "linkability_risk": "Giomi et al. 2023: excess success linking two halves of a training vs control record through nearest synthetic rows",
    "inference_risk": "Giomi et al. 2023: excess success inferring a secret column of training vs control records from the nearest synthetic row (worst column)",
}


# ------------------------------------------------------------------------------------------------- statistics
def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float, float]:
    """Rate and Wilson score interval (Wilson 1927): well-behaved at rates near 0 and 1 and for small n."""
    if n == 0:
        return 0.0, 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return p, max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class AttackResult:
    """One attack's rates on training and control records, and the derived risk with its interval."""

    name: str
    n_attacks: int
    train_rate: float
    control_rate: float
    risk: float
    ci_low: float
    ci_high: float

    def as_metric(self, threshold: float | None = None, **details: object) -> MetricResult:
        return MetricResult.judge(
            self.name,
            "privacy",
            round(self.risk, 6),
            threshold,
            "max",
            DESCRIPTIONS[self.name],
            {
                "ci_95": [round(self.ci_low, 4), round(self.ci_high, 4)],
                "train_success": round(self.train_rate, 4),
                "control_success": round(self.control_rate, 4),
                "n_attacks": self.n_attacks,
                **details,
            },
        )


def risk_from_counts(name: str, train_hits: int, n_train: int, control_hits: int, n_control: int) -> AttackResult:
    """risk = (r_train - r_control) / (1 - r_control), clipped at 0, with a conservative interval (Giomi et al. 2023)."""
    rt, lt, ht = wilson(train_hits, n_train)
    rc, lc, hc = wilson(control_hits, n_control)

    def residual(a: float, c: float) -> float:
        return 0.0 if c >= 1 else max(0.0, (a - c) / (1 - c))

    return AttackResult(name, n_train, rt, rc, residual(rt, rc), residual(lt, hc), residual(ht, lc))


# ------------------------------------------------------------------------------------------------ encoding
class _Space:
    """Columns as numbers for distances: numeric scaled by the synthetic range, discrete as integer codes."""

    def __init__(self, synthetic: pd.DataFrame, schema: TableSchema):
        self.columns = [c for c in schema.modelled if c.name in synthetic.columns]
        self.numeric = [
            c.kind in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER, ColumnKind.DATETIME) for c in self.columns
        ]
        self.levels: dict[str, pd.Index] = {}
        self.lo: dict[str, float] = {}
        self.span: dict[str, float] = {}
        for c, num in zip(self.columns, self.numeric, strict=True):
            if num:
                v = numeric_values(synthetic[c.name], c)
                finite = v[np.isfinite(v)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                self.lo[c.name], self.span[c.name] = lo, (hi - lo) or 1.0
            else:
                self.levels[c.name] = pd.Index(pd.unique(category_labels(synthetic[c.name])))

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, n_columns) floats: scaled numbers (NaN -> -1) and level codes (unseen -> -1)."""
        cols = []
        for c, num in zip(self.columns, self.numeric, strict=True):
            if num:
                v = (numeric_values(frame[c.name], c) - self.lo[c.name]) / self.span[c.name]
                cols.append(np.nan_to_num(v, nan=-1.0))
            else:
                cols.append(self.levels[c.name].get_indexer(category_labels(frame[c.name])).astype(float))
        return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))


@torch.no_grad()
def nearest_in_groups(
    space: _Space,
    query: np.ndarray,
    reference: np.ndarray,
    groups: list[np.ndarray],
    *,
    k: int = 1,
    block_elements: int = RISK_BLOCK_ELEMENTS,
) -> np.ndarray:
    """Indices of the k nearest reference rows for every query row, once per column group: (n_query, k, n_groups).

    The distance over a group is the sum of per-column distances (|a - b| clipped at 1 for numbers, a mismatch for
    discrete codes), so one pass over the reference serves every group: the per-column distances of a block form a
    (query, reference block, column) tensor that one matrix product with the 0/1 column-to-group matrix turns into
    group sums. The reference is walked in blocks of about `block_elements` floats, so memory stays bounded whatever
    its size; ties keep the lower reference index, as `argmin` does.
    """
    numeric = np.array(space.numeric, dtype=bool)
    membership = np.zeros((len(numeric), len(groups)), dtype=np.float32)
    for g, cols in enumerate(groups):
        membership[cols, g] = 1.0
    weights = torch.from_numpy(np.concatenate([membership[numeric], membership[~numeric]]))
    leave_one_out = weights.shape[0] == weights.shape[1] and bool((weights == 1 - torch.eye(len(groups))).all())
    q = torch.from_numpy(query.astype(np.float32))
    r = torch.from_numpy(reference.astype(np.float32))
    q_num, q_cat, r_num, r_cat = q[:, numeric], q[:, ~numeric], r[:, numeric], r[:, ~numeric]
    k = min(k, len(reference))
    chunk = max(k, block_elements // max(1, len(query) * max(len(numeric), len(groups))))
    best_d = torch.empty(len(query), 0, len(groups))
    best_i = torch.empty(len(query), 0, len(groups), dtype=torch.long)
    for start in range(0, len(reference), chunk):
        stop = min(start + chunk, len(reference))
        per_col = torch.cat(
            [
                (q_num[:, None, :] - r_num[None, start:stop, :]).abs_().clamp_(max=1.0),
                (q_cat[:, None, :] != r_cat[None, start:stop, :]).float(),
            ],
            dim=2,
        )  # (query, block, column), numeric columns first
        # All-but-one groups are the total minus each column, far cheaper than the product.
        d = per_col.sum(dim=2, keepdim=True) - per_col if leave_one_out else per_col @ weights
        if k == 1:
            top_d, top_i = d.min(dim=1, keepdim=True)
        else:
            top_d, top_i = d.topk(k, dim=1, largest=False, sorted=True)
        # Earlier blocks first: a stable sort of the merged candidates keeps the lower index on ties.
        merged_d, merged_i = torch.cat([best_d, top_d], dim=1), torch.cat([best_i, top_i + start], dim=1)
        order = merged_d.argsort(dim=1, stable=True)[:, :k]
        best_d, best_i = merged_d.gather(1, order), merged_i.gather(1, order)
    return best_i.numpy()


# ---------------------------------------------------------------------------------------------------- attacks
def _sample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return frame.iloc[rng.choice(len(frame), size=min(n, len(frame)), replace=False)].reset_index(drop=True)


@dataclass(frozen=True)
class Attack:
    """What every attack is given: the rows the model saw (`train`), real rows it never saw (`control`), the release
    and its schema, and how many targets to draw per side with which seed."""

    train: pd.DataFrame
    control: pd.DataFrame
    synthetic: pd.DataFrame
    schema: TableSchema
    n_attacks: int = DEFAULT_ATTACKS
    seed: int = 0

    def start(self) -> tuple[np.random.Generator, _Space]:
        """A generator fresh from the seed and the release's space: each attack draws the same way whatever ran before."""
        return np.random.default_rng(self.seed), _Space(self.synthetic, self.schema)


def singling_out(attack: Attack, *, n_cols: int = 3) -> AttackResult:
    """Multivariate singling out: predicates from synthetic rows that isolate one synthetic row, tried on real data."""
    rng, space = attack.start()
    syn = np.asfortranarray(space.encode(attack.synthetic))  # column-major: predicates scan whole columns
    n_ref = min(len(attack.train), len(attack.control))
    tr = np.asfortranarray(space.encode(_sample(attack.train, n_ref, rng)))
    co = np.asfortranarray(space.encode(_sample(attack.control, n_ref, rng)))
    k = min(n_cols, syn.shape[1])
    medians = np.median(syn, axis=0) if len(syn) else np.zeros(syn.shape[1])
    queries: list[list[tuple[int, str, float]]] = []
    for _ in range(attack.n_attacks * 5):  # predicates that do not single out a synthetic row are discarded
        if len(queries) >= attack.n_attacks or k == 0:
            break
        row = syn[rng.integers(len(syn))]
        query: list[tuple[int, str, float]] = []
        mask = np.ones(len(syn), dtype=bool)
        order = rng.permutation(syn.shape[1])
        for j in order[: min(k + GROW_COLUMNS, len(order))]:
            # A number points at the nearer tail (anonymeter's rule): `<=` below the median, `>=` above it, which
            # isolates far more often than a random direction on large releases.
            op = ("<=" if row[j] <= medians[j] else ">=") if space.numeric[j] else "=="
            query.append((int(j), op, float(row[j])))
            mask &= _holds(syn[:, j], op, float(row[j]))
            # On a large release k columns rarely isolate one row; grow the predicate by a few columns first.
            if len(query) >= k and mask.sum() == 1:
                queries.append(query)
                break
    hits_train = sum(_matches(tr, q) == 1 for q in queries)
    hits_control = sum(_matches(co, q) == 1 for q in queries)
    return risk_from_counts("singling_out_risk", hits_train, len(queries), hits_control, len(queries))


def _holds(column: np.ndarray, op: str, value: float) -> np.ndarray:
    return column == value if op == "==" else (column <= value if op == "<=" else column >= value)


def _matches(data: np.ndarray, query: list[tuple[int, str, float]]) -> int:
    mask = np.ones(len(data), dtype=bool)
    for j, op, v in query:
        mask &= _holds(data[:, j], op, v)
    return int(mask.sum())


def linkability(attack: Attack, *, n_neighbors: int = 1) -> AttackResult:
    """Link the two column halves of a record through its nearest synthetic rows on each half."""
    rng, space = attack.start()
    syn = space.encode(attack.synthetic)
    cols = rng.permutation(syn.shape[1])
    halves = [cols[: len(cols) // 2], cols[len(cols) // 2 :]]

    def hits(frame: pd.DataFrame) -> tuple[int, int]:
        x = space.encode(_sample(frame, attack.n_attacks, rng))
        near = nearest_in_groups(space, x, syn, halves, k=n_neighbors)  # (n, k, 2)
        linked = sum(bool(set(row[:, 0]) & set(row[:, 1])) for row in near)
        return linked, len(x)

    (ht, nt), (hc, nc) = hits(attack.train), hits(attack.control)
    return risk_from_counts("linkability_risk", ht, nt, hc, nc)


def inference(attack: Attack, *, secret: str | None = None) -> AttackResult:
    """Guess a secret column from the nearest synthetic row on all other columns; the worst column when `secret` is None.

    Every candidate secret is one column group (all other columns), so one pass over the synthetic rows finds the
    nearest row for every secret at once.
    """
    rng, space = attack.start()
    syn = space.encode(attack.synthetic)
    names = [c.name for c in space.columns]
    targets = [names.index(secret)] if secret is not None else list(range(len(names)))
    targets = [j for j in targets if len(names) > 1]
    if not targets:
        return risk_from_counts("inference_risk", 0, 0, 0, 0)
    groups = [np.array([i for i in range(len(names)) if i != j]) for j in targets]
    xt = space.encode(_sample(attack.train, attack.n_attacks, rng))
    xc = space.encode(_sample(attack.control, attack.n_attacks, rng))
    near_t = nearest_in_groups(space, xt, syn, groups)[:, 0, :]  # (n, n_targets)
    near_c = nearest_in_groups(space, xc, syn, groups)[:, 0, :]

    def hits(x: np.ndarray, near: np.ndarray, g: int) -> int:
        j = targets[g]
        guess = syn[near[:, g], j]
        if space.numeric[j]:
            return int((np.abs(guess - x[:, j]) <= NUMERIC_TOLERANCE).sum())
        return int((guess == x[:, j]).sum())

    results = [
        risk_from_counts("inference_risk", hits(xt, near_t, g), len(xt), hits(xc, near_c, g), len(xc))
        for g in range(len(targets))
    ]
    return max(results, key=lambda r: r.risk)  # the first of equals, as a scan in column order would keep


def measure_risks(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    n_attacks: int = DEFAULT_ATTACKS,
    seed: int = 0,
    thresholds: dict[str, float] | None = None,
) -> list[MetricResult]:
    """The three attacks as privacy-group `MetricResult`s (information only unless `thresholds` names them).

    A synthetic release larger than `MAX_SYNTHETIC_ROWS` is attacked through a random subset of that size; the
    details of each metric say how many synthetic rows the attacker held.
    """
    thresholds = thresholds or {}
    if len(synthetic) > MAX_SYNTHETIC_ROWS:
        synthetic = _sample(synthetic, MAX_SYNTHETIC_ROWS, np.random.default_rng(seed))
    attack = Attack(train, control, synthetic, schema, n_attacks=n_attacks, seed=seed)
    results = [singling_out(attack), linkability(attack), inference(attack)]
    for r in results:
        logger.info(
            "risk: %s %.3f [%.3f, %.3f] (train %.3f, control %.3f)",
            r.name,
            r.risk,
            r.ci_low,
            r.ci_high,
            r.train_rate,
            r.control_rate,
        )
    return [r.as_metric(thresholds.get(r.name), synthetic_rows=len(synthetic)) for r in results]


measure_risks_task = task(name="measure-risks", cache_policy=NO_CACHE)(measure_risks)
