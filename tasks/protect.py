"""Keep personal data and identifiers out of training, suppress rare categories, and complete the synthetic table.

Identifier, free-text and PII columns never reach a model (`training_frame`). Rare categories are merged into one bucket
on the training split before encoding (`suppress_rare_categories`), so a value seen a handful of times cannot be
reproduced. In the output, identifiers are regenerated and PII columns follow their schema `pii_action`:

- `fake` (the default): Faker values of the column's kind (emails, names, phones, national IDs, addresses). Synthetic
  rows are not real people, so there is no real value to map: each synthetic *entity* gets its own fake value, drawn
  from a Faker seeded by the run, and the same entity key (the row's regenerated identifier, or the row itself when the table
  has none) always gets the same fake value within a run. On real data (`pseudonymize`) the same real value maps to the
  same fake value within a run, through a keyed hash of the value.
- `hash`: HMAC-SHA256 with a secret from `SYNTHGATE_HASH_KEY` (never stored or logged). Hashing a *sampled real value*
  into the output would leak membership (the key holder, or anyone linking hashes to another keyed export, learns that
  the person is in the training data), so the synthetic column holds the keyed hash of the synthetic entity's surrogate
  value: an opaque, consistent pseudonym with the real column's format (64 hex characters) and no link to any real row.
  `pseudonymize` applies the keyed hash to real values, for a protected copy of the real table.
- `drop`: the column is not published.

Free text is PII until shown otherwise: here the output holds Faker text with the real column's lengths; the run then
replaces the columns it can model by text synthesised from the scrubbed training text (`tasks.text_columns`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.constraints import suppress_in_rules
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.pii import PIIKind
from synthgate.schemas.table import RARE_LABEL, ColumnKind, ColumnSchema, TableSchema, plain_scalar
from synthgate.tasks.keys import column_key, new_identifiers, row_hash, row_uniform

HASH_KEY_ENV = "SYNTHGATE_HASH_KEY"
# Categories with fewer training rows than this are merged into the rare bucket (k-anonymity-style threshold on each
# categorical column's marginal; 5 is the usual small-cell suppression limit of statistical agencies).
DEFAULT_RARE_K = 5  # docs/decisions.md#rare-category-k


def training_frame(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Only the modelled columns: identifiers, free text and PII are dropped before anything is fitted."""
    return frame[[c.name for c in schema.modelled]]


# -------------------------------------------------------------------------------------------- rare categories
def fold_unlisted(frame: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Values of a categorical column that its `categories` do not list, folded into the rare bucket when the list
    holds it (a DP domain from `synthgate schema infer --epsilon`); other columns are returned as they are."""
    out = frame
    for col in schema.columns:
        if col.kind != ColumnKind.CATEGORICAL or RARE_LABEL not in (col.categories or []) or col.name not in frame:
            continue
        series = frame[col.name]
        unlisted = series.notna() & ~series.isin(col.categories)
        if unlisted.any():
            out = out.copy() if out is frame else out
            out[col.name] = series.astype(object).mask(unlisted, RARE_LABEL)
    return out


def suppress_rare_categories(
    train: pd.DataFrame, schema: TableSchema, *, k: int = DEFAULT_RARE_K, label: str = RARE_LABEL
) -> tuple[pd.DataFrame, TableSchema, dict[str, list[Any]]]:
    """Merge categories with fewer than `k` training rows into one bucket, in the data and in the schema.

    Applied to the training split before encoding, so the encoder, the model and the output's value set never hold a
    value seen fewer than `k` times. String-valued columns get the `label` bucket; numeric and boolean categorical
    columns (whose dtype cannot hold a label) map a rare value to the column's most frequent value instead.

    Args:
        train: the training split.
        schema: the schema the run uses; categorical columns' `categories` are rewritten.
        k: minimum rows a category needs to be kept as itself.
        label: the bucket's value for string columns.

    Returns:
        `(train, schema, suppressed)`: the rewritten training rows, the schema with updated category lists, and per
        column the values that were suppressed (for the run notes; never published).
    """
    if k <= 1:
        return train, schema, {}
    out = train.copy()
    columns: list[ColumnSchema] = []
    suppressed: dict[str, list[Any]] = {}
    replacements: dict[str, Any] = {}
    for col in schema.columns:
        if col.kind != ColumnKind.CATEGORICAL or col.name not in out.columns or not col.is_modelled:
            columns.append(col)
            continue
        series = out[col.name]
        counts = series.value_counts(dropna=True)
        known = list(col.categories or [])
        rare = [c for c in known if int(counts.get(c, 0)) < k]
        if not rare:
            columns.append(col)
            continue
        kept = [c for c in known if c not in rare]
        stringy = all(isinstance(c, str) for c in known)
        if stringy:
            replacement: Any = label
            categories = [*kept, label] if label not in kept else kept
        elif kept:
            replacement = plain_scalar(counts.loc[kept].idxmax())
            categories = kept
        else:  # numeric column whose every value is rare: nothing safe to keep but one value
            replacement = plain_scalar(counts.idxmax())
            categories = [replacement]
        mask = series.isin(rare)
        if stringy and not pd.api.types.is_object_dtype(series) and not pd.api.types.is_string_dtype(series):
            series = series.astype(object)
        out[col.name] = series.mask(mask, replacement)
        suppressed[col.name], replacements[col.name] = rare, replacement
        columns.append(col.model_copy(update={"categories": categories}))
    rules = suppress_in_rules(schema.constraints, suppressed, replacements)  # no rare value stays in a rule either
    return out, schema.model_copy(update={"columns": columns, "constraints": rules}), suppressed


# -------------------------------------------------------------------------------------------------------- PII
def hash_key() -> bytes:
    """The HMAC key from `SYNTHGATE_HASH_KEY`.

    Raises:
        InvalidInputError: the variable is unset or empty (a default key would make every hash reversible by lookup).
    """
    key = os.environ.get(HASH_KEY_ENV, "")
    if not key:
        raise InvalidInputError(
            f"a column has pii_action 'hash', which needs a secret key: set the environment variable {HASH_KEY_ENV} "
            "(e.g. `export SYNTHGATE_HASH_KEY=$(openssl rand -hex 32)`); it is never stored, so keep it to hash "
            "consistently across runs, or choose pii_action 'drop' or 'fake'"
        )
    return key.encode()


def keyed_hash(value: Any, key: bytes) -> str:
    """HMAC-SHA256 of the value's text (RFC 2104): a keyed pseudonym; without the key no dictionary attack works."""
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def check_pii_actions(schema: TableSchema) -> None:
    """Fail before training when a PII action cannot be carried out (e.g. `hash` without a key)."""
    if any(c.pii is not None and c.pii_action == "hash" for c in schema.columns):
        hash_key()


_FAKERS = {
    PIIKind.EMAIL: "email",
    PIIKind.PHONE: "phone_number",
    PIIKind.PERSON_NAME: "name",
    PIIKind.NATIONAL_ID: "ssn",
    PIIKind.ADDRESS: "street_address",
    PIIKind.FREE_TEXT: "sentence",
}


@functools.cache
def _faker() -> Any:
    from faker import Faker

    return Faker(use_weighting=False)  # uniform picks, much faster: docs/decisions.md#pii-fake-default


def _fake_one(kind: PIIKind, entity: str, run_seed: int) -> str:
    """A fake value of `kind` determined by (entity, run seed): the same entity always gets the same value in a run."""
    digest = hashlib.sha256(f"{run_seed}:{kind}:{entity}".encode()).digest()
    fake = _faker()
    fake.seed_instance(int.from_bytes(digest[:8], "big"))  # re-seeding per entity: cheap, and order-independent
    return str(getattr(fake, _FAKERS[kind])())


def fake_values(kind: PIIKind, entities: list[str], *, seed: int, avoid: set[str] | None = None) -> list[str]:
    """Fake values for `entities`: consistent per entity, distinct across entities where Faker allows.

    Args:
        kind: the PII kind, which picks the Faker provider.
        entities: one key per output row; equal keys get equal values.
        seed: the run seed.
        avoid: values that must never be produced (the real column's values: a fake that happens to equal a real
            email would publish it).
    """
    avoid = avoid or set()
    cache: dict[str, str] = {}
    used: set[str] = set()
    out = []
    for entity in entities:
        if entity not in cache:
            value, attempt = _fake_one(kind, entity, seed), 0
            while (value in avoid or value in used) and attempt < 20:
                attempt += 1
                value = _fake_one(kind, f"{entity}#{attempt}", seed)
            cache[entity] = value
            used.add(value)
        out.append(cache[entity])
    return out


def pseudonymize(frame: pd.DataFrame, schema: TableSchema, *, seed: int) -> pd.DataFrame:
    """Apply PII actions to *real* rows: drop, keyed hash of the real value, or a fake value consistent per value.

    For a protected copy of the real table (not the synthetic output): equal real values map to equal fakes/hashes
    within a run, so joins and counts on the column still work.
    """
    out = frame.copy()
    for col in schema.pii_columns:
        action = col.pii_action or "fake"
        if col.name not in out.columns:
            continue
        if action == "drop":
            out = out.drop(columns=col.name)
        elif action == "hash":
            key = hash_key()
            out[col.name] = out[col.name].map(lambda v, key=key: None if pd.isna(v) else keyed_hash(v, key))
        else:
            real = out[col.name]
            secret = str(seed).encode()
            entities = [keyed_hash(v, secret) for v in real.fillna("").astype(str)]
            values = fake_values(col.pii, entities, seed=seed, avoid=set(real.dropna().astype(str)))
            out[col.name] = pd.Series(values, index=real.index).where(real.notna(), None)
    return out


# ----------------------------------------------------------------------------------------------------- output
def output_columns(schema: TableSchema) -> list[ColumnSchema]:
    """Columns of the published table: every source column, in order, but PII columns whose action is `drop`."""
    return [c for c in schema.columns if not (c.pii is not None and c.pii_action == "drop")]


def _null_mask(col: ColumnSchema, rows: np.ndarray, real: pd.DataFrame | None, seed: int) -> np.ndarray:
    """Rows left empty in a column that is not modelled: the real column's share of them, drawn per row."""
    if not col.nullable or real is None or col.name not in real or len(real) == 0:
        return np.zeros(len(rows), dtype=bool)
    return row_uniform(column_key(seed, col.name, "null"), rows) < float(real[col.name].isna().mean())


def _free_text(col: ColumnSchema, rows: np.ndarray, real: pd.Series | None, *, seed: int, avoid: set[str]) -> list[str]:
    """Faker text whose lengths follow the real column's (only the lengths are read, never the text)."""
    lengths = np.sort(real.dropna().astype(str).str.len().to_numpy()) if real is not None else np.empty(0)
    picks = row_uniform(column_key(seed, col.name, "length"), rows)
    targets = lengths[(picks * lengths.size).astype(int)] if lengths.size else np.full(len(rows), 60)
    seeds = row_hash(column_key(seed, col.name, "text"), rows)
    fake = _faker()
    out = []
    for target, row_seed in zip(targets.tolist(), seeds.tolist(), strict=True):
        fake.seed_instance(row_seed)
        text = _text_of_length(fake, int(target))
        while text in avoid:
            text = _text_of_length(fake, int(target))
        out.append(text)
    return out


def _text_of_length(fake: Any, target: int) -> str:
    """Faker sentences cut at the last word that fits `target` characters (Faker's own limit runs short)."""
    text = fake.text(max_nb_chars=max(2 * target, 40)).replace("\n", " ")
    if len(text) <= target:
        return text
    cut = text.rfind(" ", 0, target + 1)
    return text[: cut if cut > 0 else target].rstrip(" ,.") + "."


def _empty(col: ColumnSchema, n: int) -> pd.Series:
    return pd.Series([None] * n, dtype=object).astype(col.dtype)


def complete_output(
    synthetic: pd.DataFrame,
    schema: TableSchema,
    *,
    seed: int,
    real: pd.DataFrame | None = None,
    offset: int = 0,
    total: int | None = None,
) -> pd.DataFrame:
    """The whole synthetic table: modelled columns as decoded, the rest regenerated, every column in schema order.

    Identifiers are new keys in the source's format (`tasks.keys`); PII columns get fake values of their kind, one
    per synthetic entity, or keyed hashes of those (`hash`), or are left out (`drop`); free text is Faker text of the
    real lengths; empty columns stay empty. Columns the model does not see keep the real column's share of nulls.

    Args:
        synthetic: the decoded modelled columns.
        schema: the run's schema.
        seed: the run seed (identifiers and fakes are reproducible per run).
        real: the real rows, only to read null shares and text lengths and to make sure no identifier or fake value
            equals a real one; never copied into the output.
        offset: rows already written by earlier batches of a streamed output (keys stay unique across batches).
        total: rows of the whole output, when known.
    """
    n = len(synthetic)
    rows = np.arange(offset, offset + n)
    total = total if total is not None else offset + n
    out: dict[str, pd.Series] = {}
    entity_keys: list[str] | None = None
    for col in schema.columns:  # identifiers first: they are the entity keys of the PII columns
        if col.kind == ColumnKind.IDENTIFIER and col.pii is None:
            source = real[col.name] if real is not None and col.name in real else None
            keys = new_identifiers(col, rows, seed=seed, total=total, real=source)
            entity_keys = entity_keys or [f"{col.name}={v}" for v in keys]
            out[col.name] = keys.mask(_null_mask(col, rows, real, seed))
    entity_keys = entity_keys or [f"row={r}" for r in rows]
    for col in output_columns(schema):
        if col.name in out:
            continue
        if col.is_modelled:
            out[col.name] = synthetic[col.name].reset_index(drop=True)
        elif col.kind == ColumnKind.EMPTY:
            out[col.name] = _empty(col, n)
        else:
            source = real[col.name] if real is not None and col.name in real else None
            avoid = set(source.dropna().astype(str)) if source is not None else set()
            if col.pii is None or col.pii == PIIKind.FREE_TEXT:
                values = _free_text(col, rows, source, seed=seed, avoid=avoid)
            else:
                values = fake_values(col.pii, entity_keys, seed=seed, avoid=avoid)
            if col.pii_action == "hash":
                key = hash_key()
                values = [keyed_hash(v, key) for v in values]
            series = pd.Series(values, dtype=object).mask(_null_mask(col, rows, real, seed))
            out[col.name] = series.astype(col.dtype) if col.dtype in ("str", "string", "object") else series
    return pd.DataFrame({c.name: out[c.name] for c in output_columns(schema)})


complete_output_task = task(name="complete-output", cache_policy=NO_CACHE)(complete_output)
