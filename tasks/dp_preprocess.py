"""Preprocessing that does not leak around the privacy budget: encoder state from public bounds or DP estimates.

DP-SGD protects the network's weights, but an encoder fitted on the private rows (category lists, min/max, means and
standard deviations) is published with the model and shapes every synthetic value: a category seen once would appear
in the output's value set. So with `--epsilon`:

- a user schema file (`--schema`) is taken as public knowledge: its category lists and minimum/maximum become the
  encoder state for free (the user vouches that they are not derived from the private rows);
- otherwise a share of the budget (`PREPROCESS_SHARE`, 10%) buys DP estimates, released together by one Gaussian
  mechanism (L2 sensitivity sqrt(n_columns): one row moves one count per column), calibrated through RDP (Mironov
  2017): noisy counts of each candidate category, kept only above a threshold that a category held by a single row
  passes with probability below delta (the unknown-domain histogram of Korolova et al. 2009); and noisy counts over a
  fixed, data-independent grid of signed powers of 2^(1/4) for numbers, whose outermost occupied bins give the range.
  Dropped categories fall into the rare bucket (or the most frequent kept level for non-string columns).

Normalisation is then computed from the bounds alone (centre and range/4), never from the rows, and DP models always
use "standard" normalisation (mode-specific normalisation fits a mixture per column on the private rows). The budget
split is basic composition: (eps_pre + eps_train, delta_pre + delta_train) = (epsilon, delta), recorded in the notes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE
from scipy.stats import norm
from torch import Tensor

from synthgate.models.encoders.table import MISSING, ColumnState, TableEncoder, _numeric_values
from synthgate.models.privacy import gaussian_sigma
from synthgate.models.registry import model_names, private_auto, private_name, supports_privacy
from synthgate.schemas.table import RARE_LABEL, ColumnKind, ColumnSchema, TableSchema
from synthgate.tasks.protect import fold_unlisted, training_frame

logger = logging.getLogger(__name__)

PREPROCESS_SHARE = 0.1  # of epsilon and delta, for category lists and ranges (docs/decisions.md#dp-preprocess-share)
TEXT_SHARE = 0.2  # of epsilon and delta, for the free-text columns together (docs/decisions.md#text-dp)
_GRID = np.concatenate([-(2.0 ** (np.arange(160, -81, -1) / 4)), [0.0], 2.0 ** (np.arange(-80, 161) / 4)])
# A bin's noisy count must clear this many sigmas to widen the range: an empty bin passes with probability 0.05 /
# len(_GRID), so the whole grid adds a false bin with probability 5% (at 3 sigma, one run in two did).
_RANGE_Z = float(norm.isf(0.05 / len(_GRID)))


@dataclass
class PrivateEncoding:
    """The encoder, encoded rows and schema a DP run trains on, and how the budget was split."""

    encoder: TableEncoder
    encoded: Tensor
    schema: TableSchema
    train_epsilon: float
    train_delta: float
    preprocess_epsilon: float
    preprocess_delta: float
    notes: list[str] = field(default_factory=list)


def _dp_categories(
    col: ColumnSchema, series: pd.Series, sigma: float, threshold: float, rng: np.random.Generator
) -> tuple[list[Any], Any]:
    """Kept categories (noisy count above threshold) and the replacement for the others."""
    known = list(col.categories or [])
    if col.kind == ColumnKind.BOOLEAN:
        return known, None  # the domain {False, True} is public
    counts = series.value_counts()
    noisy = {c: float(counts.get(c, 0)) + rng.normal(0, sigma) for c in known}
    kept = [c for c in known if noisy[c] >= threshold]
    if all(isinstance(c, str) for c in known):
        return [*kept, RARE_LABEL] if RARE_LABEL not in kept else kept, RARE_LABEL
    if not kept:
        kept = [max(known, key=noisy.get)]
    return kept, max(kept, key=noisy.get)


def _dp_range(values: np.ndarray, sigma: float, rng: np.random.Generator) -> tuple[float, float] | None:
    """Outermost grid bins whose noisy count clears 3 sigma: a DP range within a factor 2^(1/4) of the data's."""
    finite = values[np.isfinite(values)]
    idx = np.clip(np.searchsorted(_GRID, finite), 1, len(_GRID) - 1)
    counts = np.bincount(idx, minlength=len(_GRID)).astype(float) + rng.normal(0, sigma, len(_GRID))
    occupied = np.flatnonzero(counts >= _RANGE_Z * sigma)
    if occupied.size == 0:
        return None
    return float(_GRID[occupied[0] - 1]), float(_GRID[occupied[-1]])


def private_encode(
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    epsilon: float,
    delta: float,
    public_schema: bool,
    seed: int = 0,
) -> PrivateEncoding:
    """Build the encoder state from public bounds or DP estimates and encode the training rows.

    Args:
        train: the training split (after PII removal and rare-category suppression).
        schema: the run's schema; with `public_schema` its bounds and categories are used as they are.
        epsilon, delta: the whole run's budget; the returned `train_*` share is what DP-SGD may spend.
        public_schema: the schema came from the user, not from the rows.
        seed: seeds the Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    notes: list[str] = []
    eps_pre = 0.0 if public_schema else PREPROCESS_SHARE * epsilon
    delta_pre = 0.0 if public_schema else PREPROCESS_SHARE * delta
    frame = training_frame(train, schema).copy()
    private_schema = schema
    if public_schema:
        notes.append("privacy: category lists and ranges from the user's schema (public); all of epsilon to training")
        if schema.domain_epsilon is not None:
            notes.append(
                f"privacy: the schema's bounds and categories were released under DP by `synthgate schema infer "
                f"--epsilon` (epsilon {schema.domain_epsilon:g}, delta {schema.domain_delta or 0:.2g}); publishing "
                f"this output costs that plus this run's epsilon {epsilon:g}"
            )
        elif schema.inferred_from:
            notes.append(
                f"privacy: the schema was inferred from data (content hash {schema.inferred_from[:12]}): its bounds "
                "and categories describe those rows and are outside epsilon; write them from public knowledge, or "
                "drop --schema to find them under DP"
            )
            logger.warning(notes[-1])
    else:
        logger.warning(
            "privacy: without a complete --schema, category lists and ranges are found on the private rows and "
            "cost %.0f%% of epsilon; categories with few rows vanish. To keep them, write their domain from public "
            "knowledge (`synthgate schema infer INPUT -o schema.yaml`, edit it, then --schema schema.yaml), or "
            "release it under DP once: `synthgate schema infer INPUT --epsilon 0.3 -o schema.yaml`",
            100 * PREPROCESS_SHARE,
        )
        private_schema, frame, domain_notes = private_domain(frame, schema, epsilon=eps_pre, delta=delta_pre, rng=rng)
        notes += [*domain_notes, "privacy: the rest of the budget to training"]
    encoder = encoder_from_schema(private_schema)
    encoded = encoder.transform(_clip(frame, private_schema))
    return PrivateEncoding(
        encoder=encoder,
        encoded=encoded,
        schema=private_schema,
        train_epsilon=epsilon - eps_pre,
        train_delta=delta - delta_pre,
        preprocess_epsilon=eps_pre,
        preprocess_delta=delta_pre,
        notes=notes,
    )


def private_domain(
    frame: pd.DataFrame, schema: TableSchema, *, epsilon: float, delta: float, rng: np.random.Generator
) -> tuple[TableSchema, pd.DataFrame, list[str]]:
    """Category lists and ranges of the modelled columns released under (epsilon, delta)-DP, with the rows rewritten
    to fit them (dropped levels folded into the rare bucket, or the most frequent kept level for non-string columns).

    One Gaussian mechanism (L2 sensitivity sqrt(columns): a row moves one count per column) at half of delta; the
    other half goes to the category thresholds, split over the columns.
    """
    columns = {c.name: c for c in schema.columns}
    modelled = schema.modelled
    frame = frame.copy()
    sigma = gaussian_sigma(epsilon, delta / 2, sensitivity=math.sqrt(max(len(modelled), 1)))
    threshold = 1 + sigma * float(norm.isf(delta / 2 / max(len(modelled), 1)))
    notes = [
        f"privacy: epsilon {epsilon:.3g}, delta {delta:.2g} spent on DP category lists and ranges "
        f"(Gaussian sigma {sigma:.1f}, category threshold {threshold:.0f} rows)"
    ]
    for col in modelled:
        if col.name not in frame:
            continue
        series = frame[col.name]
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            kept, replacement = _dp_categories(col, series, sigma, threshold, rng)
            if replacement is not None:
                rare = ~series.isin(kept) & series.notna()
                if rare.any():
                    frame[col.name] = series.astype(object).mask(rare, replacement)
            columns[col.name] = col.model_copy(update={"categories": kept})
        else:
            bounds = _dp_range(_numeric_values(series, col), sigma, rng)
            lo, hi = bounds if bounds is not None else (0.0, 1.0)
            if col.kind == ColumnKind.DATETIME:
                lo_s, hi_s = (pd.Timestamp(v, unit="s").isoformat() for v in (lo, hi))
                columns[col.name] = col.model_copy(update={"minimum": lo_s, "maximum": hi_s})
            else:
                lo, hi = _outward(lo, hi, 0 if col.kind == ColumnKind.INTEGER else col.decimals)
                columns[col.name] = col.model_copy(update={"minimum": lo, "maximum": hi})
    return schema.model_copy(update={"columns": [columns[c.name] for c in schema.columns]}), frame, notes


def infer_private_schema(
    frame: pd.DataFrame, *, name: str, epsilon: float, delta: float | None = None, seed: int = 0
) -> TableSchema:
    """A schema whose bounds and categories are released under (epsilon, delta)-DP, public from then on.

    Column kinds, dtypes and formats are read from the rows as `infer_schema` does: they describe the columns' types,
    not their values, and are treated as public metadata, as MST and AIM treat the domain's shape. Everything that
    counts or lists values is made private or removed: the row count, the rules between columns and the inference
    notes are dropped, every modelled column may be missing, category lists and ranges come from `private_domain`.
    Non-string categorical columns become numbers with a DP range (a level list found under noise would refuse later
    rows holding a dropped level; a range does not), and string ones keep the rare bucket for levels under the noise.

    Raises:
        InvalidInputError: the budget is not meaningful for the table's size.
    """
    from synthgate.models.privacy import check_budget, default_delta
    from synthgate.schemas.table import infer_schema

    delta = delta if delta is not None else default_delta(len(frame))
    check_budget(epsilon, delta, len(frame))
    schema = infer_schema(frame, name=name)
    columns = []
    for col in schema.columns:
        update: dict[str, Any] = {}
        if col.is_modelled:
            update["nullable"] = True
            stringy = all(isinstance(c, str) for c in col.categories or [])
            if col.kind == ColumnKind.CATEGORICAL and not stringy:
                integral = all(float(c).is_integer() for c in col.categories or [])
                update.update(kind=ColumnKind.INTEGER if integral else ColumnKind.CONTINUOUS, categories=None)
        kind = update.get("kind", col.kind).value
        update["reason"] = f"{kind}: from the column's type; its domain is under DP"
        columns.append(col.model_copy(update=update))
    public = schema.model_copy(update={"columns": columns, "n_rows": None, "constraints": [], "inferred_from": None})
    private, _, _ = private_domain(frame, public, epsilon=epsilon, delta=delta, rng=np.random.default_rng(seed))
    return private.model_copy(update={"domain_epsilon": epsilon, "domain_delta": delta})


def _outward(lo: float, hi: float, decimals: int | None) -> tuple[float, float]:
    """A DP range rounded outward to the column's decimals, so integer columns get integer bounds."""
    if decimals is None:
        return lo, hi
    scale = 10.0**decimals
    return math.floor(lo * scale) / scale, math.ceil(hi * scale) / scale


def _bounds(col: ColumnSchema) -> tuple[float, float] | None:
    if col.minimum is None or col.maximum is None:
        return None
    if col.kind == ColumnKind.DATETIME:
        return pd.Timestamp(col.minimum).timestamp(), pd.Timestamp(col.maximum).timestamp()
    return float(col.minimum), float(col.maximum)


def _clip(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Clip numbers into the (public or DP) bounds, so the encoded rows hold nothing outside them."""
    out = frame.copy()
    for col in schema.modelled:
        bounds = _bounds(col)
        if bounds is None or col.kind not in (ColumnKind.CONTINUOUS, ColumnKind.INTEGER):
            continue
        out[col.name] = out[col.name].clip(*bounds)
    return out


def encoder_from_schema(schema: TableSchema) -> TableEncoder:
    """A fitted `TableEncoder` whose state comes from the schema alone ("standard" normalisation from the bounds)."""
    encoder = TableEncoder(schema, normalization="standard")
    states = []
    for col in schema.modelled:
        state = ColumnState(name=col.name, kind=col.kind.value, has_missing=bool(col.nullable))
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            state.levels = list(col.categories or []) + ([MISSING] if col.nullable else [])
        else:
            lo, hi = _bounds(col) or (0.0, 1.0)
            state.mean, state.std = (lo + hi) / 2, max((hi - lo) / 4, 1e-9)
        states.append(state)
    encoder._set_states(states)
    return encoder


# How each family's private training is described in the run's notes.
_MECHANISM = {"gmm": "DP-EM", "autoencoder": "DP-SGD + DP-EM latent mixture", "marginal": "zCDP marginals"}


@dataclass
class PreparedTraining:
    """What the flow trains on after privacy protection: rows, schema, and (with epsilon) the DP encoding."""

    train: pd.DataFrame
    schema: TableSchema
    private: PrivateEncoding | None
    suppressed: dict[str, list[Any]]
    notes: list[str] = field(default_factory=list)
    model: str | None = None  # the requested --model
    text_budget: dict[str, tuple[float, float]] = field(default_factory=dict)  # (epsilon, delta) per text column

    def model_name(self, requested: str) -> str:
        """The registry name to build: with epsilon, the family's private variant (`gmm` -> `gmm_dp`, DP-EM)."""
        return requested if self.private is None else private_name(requested)

    def model_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The model's options with the training share of the budget added; the config's own private settings
        (`PrivateDefaults`) apply to whatever the options leave at its defaults."""
        if self.private is None:
            return dict(options)
        return {**options, "epsilon": self.private.train_epsilon, "delta": self.private.train_delta}

    def spent(self, model: Any) -> tuple[float | None, float | None]:
        """(epsilon, delta) spent by preprocessing plus training (basic composition); (None, None) without DP."""
        if self.private is None:
            return None, None
        report = getattr(model, "privacy_", None) or {}
        eps = self.private.preprocess_epsilon + float(report.get("epsilon", self.private.train_epsilon))
        text_eps = sum(e for e, _ in self.text_budget.values())  # the text columns' share, spent or not
        text_delta = sum(d for _, d in self.text_budget.values())
        return round(eps + text_eps, 4), self.private.preprocess_delta + self.private.train_delta + text_delta


def prepare_training(
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    model: str,
    epsilon: float | None,
    delta: float | None,
    rare_k: int | None,
    public_schema: bool,
    seed: int = 0,
    text_columns: Sequence[str] = (),
) -> PreparedTraining:
    """Check PII actions, suppress rare categories, and with `epsilon` split the budget and encode privately.

    With `epsilon` and `text_columns` (the free-text columns to synthesise), `TEXT_SHARE` of the budget is set aside
    for their text models, split evenly (basic composition), and the table gets the rest.

    Raises:
        InvalidInputError: `hash` without a key, or `epsilon` with a model that has no DP path.
    """
    from synthgate.models.privacy import check_budget, default_delta
    from synthgate.schemas.errors import InvalidInputError
    from synthgate.tasks.protect import DEFAULT_RARE_K, check_pii_actions, suppress_rare_categories

    check_pii_actions(schema)
    train = fold_unlisted(train, schema)  # levels a DP domain dropped join its rare bucket
    chosen = []
    if epsilon is not None and model == "auto":  # one private family, chosen by size: each candidate would spend
        model = private_auto(len(train))
        chosen = [f"privacy: --model auto with --epsilon trains {model!r} for {len(train)} training rows"]
    if epsilon is not None and not supports_privacy(model):
        private = ", ".join(name for name in model_names() if supports_privacy(name))
        raise InvalidInputError(
            f"--epsilon needs a model with a private training path; {model!r} has none yet; choose --model "
            f"{private}, or drop --epsilon"
        )
    # Under DP the noisy counts decide which levels survive; suppressing by exact counts would publish, in the
    # output's value set, which levels have k private rows.
    k = 0 if epsilon is not None else DEFAULT_RARE_K if rare_k is None else rare_k
    train, schema, suppressed = suppress_rare_categories(train, schema, k=k)
    notes = chosen + [
        f"rare categories (< {k} training rows) merged into '{RARE_LABEL}' in {sorted(suppressed)}"
    ] * bool(suppressed)
    if epsilon is None:
        return PreparedTraining(train, schema, None, suppressed, notes, model=model)
    delta = delta if delta is not None else default_delta(len(train))
    check_budget(epsilon, delta, len(train))
    if schema.constraints and not public_schema:  # found on the private rows and not budgeted: not published
        notes.append(f"privacy: {len(schema.constraints)} rule(s) between columns found on the private rows not used")
        schema = schema.model_copy(update={"constraints": []})
    text_budget: dict[str, tuple[float, float]] = {}
    if text_columns:
        share = TEXT_SHARE / len(text_columns)
        text_budget = {name: (share * epsilon, share * delta) for name in text_columns}
        notes.append(
            f"privacy: text columns {list(text_columns)} get epsilon {TEXT_SHARE * epsilon:.3g}, delta "
            f"{TEXT_SHARE * delta:.2g} together ({TEXT_SHARE:.0%} of the budget); the table the rest"
        )
        epsilon, delta = (1 - TEXT_SHARE) * epsilon, (1 - TEXT_SHARE) * delta
    private = private_encode(train, schema, epsilon=epsilon, delta=delta, public_schema=public_schema, seed=seed)
    notes += [
        *private.notes,
        f"privacy: {_MECHANISM.get(model, 'DP-SGD')} budget epsilon {private.train_epsilon:.3g}, "
        f"delta {private.train_delta:.2g}",
    ]
    return PreparedTraining(train, private.schema, private, suppressed, notes, model=model, text_budget=text_budget)


prepare_training_task = task(name="protect-and-budget", cache_policy=NO_CACHE)(prepare_training)
