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
from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.gates import MetricResult
from schemas.table import ColumnKind, TableSchema

logger = logging.getLogger(__name__)

DEFAULT_ATTACKS = 500  # targets per attack; CIs at 500 are about +-0.04
Z_95 = 1.959964
NUMERIC_TOLERANCE = 0.05  # inference on numbers: a guess within 5% of the range counts as correct

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

    def as_metric(self, threshold: float | None = None) -> MetricResult:
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
        self.levels: dict[str, dict] = {}
        self.lo: dict[str, float] = {}
        self.span: dict[str, float] = {}
        for c, num in zip(self.columns, self.numeric, strict=True):
            if num:
                v = self._num(synthetic[c.name], c.kind)
                finite = v[np.isfinite(v)]
                lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
                self.lo[c.name], self.span[c.name] = lo, (hi - lo) or 1.0
            else:
                values = synthetic[c.name].astype(str).unique().tolist()
                self.levels[c.name] = {v: i for i, v in enumerate(values)}

    @staticmethod
    def _num(series: pd.Series, kind: ColumnKind) -> np.ndarray:
        if kind == ColumnKind.DATETIME:
            stamps = pd.to_datetime(series)
            out = stamps.astype("datetime64[ns]").astype("int64").to_numpy(dtype=float) / 1e9
            out[stamps.isna().to_numpy()] = np.nan
            return out
        return pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """(n, n_columns) floats: scaled numbers (NaN -> -1) and level codes (unseen -> -1)."""
        cols = []
        for c, num in zip(self.columns, self.numeric, strict=True):
            if num:
                v = (self._num(frame[c.name], c.kind) - self.lo[c.name]) / self.span[c.name]
                cols.append(np.nan_to_num(v, nan=-1.0))
            else:
                lv = self.levels[c.name]
                cols.append(np.array([lv.get(v, -1) for v in frame[c.name].astype(str)], dtype=float))
        return np.stack(cols, axis=1) if cols else np.zeros((len(frame), 0))

    def distances(self, a: np.ndarray, b: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """(len(a), len(b)) mean Gower distance over the column indices `cols`."""
        num = np.array(self.numeric)[cols]
        d = np.zeros((a.shape[0], b.shape[0]))
        for j, is_num in zip(cols, num, strict=True):
            if is_num:
                d += np.minimum(np.abs(a[:, j, None] - b[None, :, j]), 1.0)
            else:
                d += a[:, j, None] != b[None, :, j]
        return d / max(len(cols), 1)


# ---------------------------------------------------------------------------------------------------- attacks
def _sample(frame: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    return frame.iloc[rng.choice(len(frame), size=min(n, len(frame)), replace=False)].reset_index(drop=True)


def singling_out(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    n_attacks: int = DEFAULT_ATTACKS,
    n_cols: int = 3,
    seed: int = 0,
) -> AttackResult:
    """Multivariate singling out: predicates from synthetic rows that isolate one synthetic row, tried on real data."""
    rng = np.random.default_rng(seed)
    space = _Space(synthetic, schema)
    syn = space.encode(synthetic)
    n_ref = min(len(train), len(control))
    tr, co = space.encode(_sample(train, n_ref, rng)), space.encode(_sample(control, n_ref, rng))
    k = min(n_cols, syn.shape[1])
    queries: list[list[tuple[int, str, float]]] = []
    for _ in range(n_attacks * 5):  # predicates that do not single out a synthetic row are discarded
        if len(queries) >= n_attacks or k == 0:
            break
        row = syn[rng.integers(len(syn))]
        query = []
        for j in rng.choice(syn.shape[1], size=k, replace=False):
            op = ("<=" if rng.random() < 0.5 else ">=") if space.numeric[j] else "=="
            query.append((int(j), op, float(row[j])))
        if _matches(syn, query) == 1:
            queries.append(query)
    hits_train = sum(_matches(tr, q) == 1 for q in queries)
    hits_control = sum(_matches(co, q) == 1 for q in queries)
    return risk_from_counts("singling_out_risk", hits_train, len(queries), hits_control, len(queries))


def _matches(data: np.ndarray, query: list[tuple[int, str, float]]) -> int:
    mask = np.ones(len(data), dtype=bool)
    for j, op, v in query:
        col = data[:, j]
        mask &= col == v if op == "==" else (col <= v if op == "<=" else col >= v)
    return int(mask.sum())


def linkability(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    n_attacks: int = DEFAULT_ATTACKS,
    n_neighbors: int = 1,
    seed: int = 0,
) -> AttackResult:
    """Link the two column halves of a record through its nearest synthetic rows on each half."""
    rng = np.random.default_rng(seed)
    space = _Space(synthetic, schema)
    syn = space.encode(synthetic)
    cols = rng.permutation(syn.shape[1])
    half_a, half_b = cols[: len(cols) // 2], cols[len(cols) // 2 :]

    def hits(frame: pd.DataFrame) -> tuple[int, int]:
        x = space.encode(_sample(frame, n_attacks, rng))
        na = np.argsort(space.distances(x, syn, half_a), axis=1, kind="stable")[:, :n_neighbors]
        nb = np.argsort(space.distances(x, syn, half_b), axis=1, kind="stable")[:, :n_neighbors]
        linked = sum(bool(set(a) & set(b)) for a, b in zip(na, nb, strict=True))
        return linked, len(x)

    (ht, nt), (hc, nc) = hits(train), hits(control)
    return risk_from_counts("linkability_risk", ht, nt, hc, nc)


def inference(
    train: pd.DataFrame,
    control: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    secret: str | None = None,
    n_attacks: int = DEFAULT_ATTACKS,
    seed: int = 0,
) -> AttackResult:
    """Guess a secret column from the nearest synthetic row on all other columns; the worst column when `secret` is None."""
    rng = np.random.default_rng(seed)
    space = _Space(synthetic, schema)
    syn = space.encode(synthetic)
    names = [c.name for c in space.columns]
    targets = [names.index(secret)] if secret is not None else list(range(len(names)))
    xt, xc = space.encode(_sample(train, n_attacks, rng)), space.encode(_sample(control, n_attacks, rng))
    worst: AttackResult | None = None
    for j in targets:
        aux = np.array([i for i in range(len(names)) if i != j])
        if aux.size == 0:
            continue

        def hits(x: np.ndarray, j: int = j, aux: np.ndarray = aux) -> int:
            guess = syn[np.argmin(space.distances(x, syn, aux), axis=1), j]
            if space.numeric[j]:
                return int((np.abs(guess - x[:, j]) <= NUMERIC_TOLERANCE).sum())
            return int((guess == x[:, j]).sum())

        result = risk_from_counts("inference_risk", hits(xt), len(xt), hits(xc), len(xc))
        if worst is None or result.risk > worst.risk:
            worst = result
    return worst or risk_from_counts("inference_risk", 0, 0, 0, 0)


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
    """The three attacks as privacy-group `MetricResult`s (information only unless `thresholds` names them)."""
    thresholds = thresholds or {}
    results = [
        singling_out(train, control, synthetic, schema, n_attacks=n_attacks, seed=seed),
        linkability(train, control, synthetic, schema, n_attacks=n_attacks, seed=seed),
        inference(train, control, synthetic, schema, n_attacks=n_attacks, seed=seed),
    ]
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
    return [r.as_metric(thresholds.get(r.name)) for r in results]


measure_risks_task = task(name="measure-risks", cache_policy=NO_CACHE)(measure_risks)
