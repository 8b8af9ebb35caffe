"""`synthgate score`'s steps: find the fitted model behind a published output, check a batch against its schema,
score it, calibrate the threshold on rows the model never saw, and write the scores atomically.

Plain functions (tests call them without Prefect); the `@task` wrappers at the bottom are for the `watch-table` flow.
The model comes from the model store (`tasks.cache`) under the key the run wrote into its output's metadata, or from
the entry a run that did not use the store kept beside its output (OUT.model/); the
holdout is rebuilt from the same metadata (the source, whose content hash must still match, and the split seed), so
the threshold is calibrated on exactly the rows the model never saw.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.encoders.table import MISSING, TableEncoder, _numeric_values
from synthgate.schemas.errors import InvalidInputError, ValidationFailedError, ValidationFailure
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.scoring import SCORE_METADATA_KEY, ScoreSummary, Threshold
from synthgate.schemas.table import ColumnKind, TableSchema
from synthgate.tasks.protect import RARE_LABEL
from synthgate.tasks.publish import atomic_path
from synthgate.tasks.threads import plan_threads, use_threads

logger = logging.getLogger(__name__)

SCORE_COLUMNS = ("anomaly_score", "is_anomaly", "top_columns")
N_TOP = 3


@dataclass
class ScoringModel:
    """A fitted model with its encoder, and the run metadata when it was found through a published output."""

    model: Any
    encoder: TableEncoder
    name: str
    source: str
    key: str | None = None
    metadata: OutputMetadata | None = None

    @property
    def schema(self) -> TableSchema:
        """The schema the model was trained under (rare categories already merged, as in training)."""
        return self.encoder.schema


# --------------------------------------------------------------------------------------------- finding the model
def find_model(ref: str | Path, *, cache_dir: str | Path | None = None, device: str = "cpu") -> ScoringModel:
    """The model behind `ref`: a Parquet file `synthgate run` published (its metadata's model key, looked up in the
    model store or in the entry the run kept beside the output, OUT.model/), a store entry (a directory with `entry.json`), or a saved model directory beside `encoder.json`.

    Raises:
        InvalidInputError: nothing usable at `ref`; the message says what was looked for and where.
    """
    from synthgate.models.registry import load_model
    from synthgate.tasks.cache import cache_root, load_beside, load_cached, model_beside
    from synthgate.tasks.publish import read_metadata

    path = Path(ref)
    if path.is_file():
        meta = read_metadata(path)
        key, stored = getattr(meta, "model_key", None), getattr(meta, "model_cache", None)
        if key is None:
            raise InvalidInputError(
                f"{path}: its metadata names no model key (written before models were kept). Fix: rerun "
                "`synthgate run`, or pass the saved model's directory to --model"
            )
        root = cache_root(cache_dir)
        # In the store when the run used it (hit, miss); beside the output when it did not (--no-cache, auto).
        cached = load_cached(root, key, device=device) if stored in ("hit", "miss") else None
        cached = cached or load_beside(path, key, device=device)
        if cached is None:
            raise InvalidInputError(
                f"{path}: its model (key {key[:16]}...) is neither in the model store {root} nor beside the output "
                f"in {model_beside(path)}. Fix: pass the store the run used with --cache-dir (or set "
                "$SYNTHGATE_CACHE), or rerun `synthgate run`"
            )
        return ScoringModel(cached.model, cached.encoder, cached.name, str(path), key, meta)
    if (path / "entry.json").is_file():
        entry = json.loads((path / "entry.json").read_text())
        model = load_model(entry["model"], path / "model", device=device)
        encoder = TableEncoder.load(path / "encoder.json")
        return ScoringModel(model, encoder, entry["model"], str(path), entry.get("key"))
    if (path / "config.json").is_file():
        encoder_file = next((p for p in (path / "encoder.json", path.parent / "encoder.json") if p.is_file()), None)
        if encoder_file is None:
            raise InvalidInputError(f"{path}: a saved model without its encoder.json (looked here and in its parent)")
        kind = json.loads((path / "config.json").read_text()).get("kind", "")
        return ScoringModel(load_model(kind, path, device=device), TableEncoder.load(encoder_file), kind, str(path))
    raise InvalidInputError(
        f"{path}: not a published Parquet file, a model-store entry or a saved model directory. Fix: pass the output "
        "of `synthgate run` (OUT.parquet)"
    )


# ------------------------------------------------------------------------------------------ checking the batch
def _match_levels(series: pd.Series, levels: list[Any]) -> pd.Series:
    """Values of `series` as the schema's levels, also where only their text agrees (1 read as "1" from a CSV).

    Each distinct value is matched once and the matches spread back by its codes: a batch has millions of rows and
    a handful of distinct values.
    """
    known = [lv for lv in levels if lv != MISSING]
    by_text = {str(lv): lv for lv in known}
    as_object = series.astype(object)
    codes, uniques = pd.factorize(as_object, use_na_sentinel=True)
    uniques = pd.Series(uniques, dtype=object)
    unmatched = ~uniques.isin(known)
    if not unmatched.any():
        return as_object
    uniques[unmatched] = uniques[unmatched].map(lambda v: by_text.get(str(v), v))
    matched = pd.Series(uniques.to_numpy()[np.maximum(codes, 0)], index=series.index, dtype=object)
    return matched.where(codes >= 0, as_object)


def check_batch(
    frame: pd.DataFrame, schema: TableSchema, *, source: str, strict: bool = True
) -> tuple[pd.DataFrame, list[str]]:
    """The batch's modelled columns as the model's encoder reads them, or every reason it cannot be scored.

    Range is not checked: a value far outside the training range is what an anomaly score is for. Checked: every
    modelled column is present, no column is unknown, numbers and dates parse, nothing is missing where the schema
    says not nullable, and categories are known (values merged into the rare bucket in training go there again).

    Args:
        strict: raise on any failure (a batch); else drop the rows that fail (rebuilt holdout or training rows).

    Returns:
        `(rows, notes)`: the modelled columns ready to encode (index kept), and what was changed or dropped.

    Raises:
        ValidationFailedError: with `strict`, every failure at once (column, rule, count, examples, fix).
    """
    failures: list[ValidationFailure] = []
    notes: list[str] = []
    known = {c.name for c in schema.columns}
    unknown = [c for c in frame.columns if c not in known and c not in SCORE_COLUMNS]
    if unknown and strict:
        failures.append(ValidationFailure(None, "known columns", len(unknown), unknown, "the model never saw them",
                                          "drop them, or retrain on a table that has them"))  # fmt: skip
    missing = [c.name for c in schema.modelled if c.name not in frame.columns]
    if missing:
        failures.append(ValidationFailure(None, "columns present", len(missing), missing, "the model needs them",
                                          "add them to the batch"))  # fmt: skip
        raise ValidationFailedError(source, failures, outcome="nothing was scored")
    out = frame[[c.name for c in schema.modelled]].copy()
    bad_rows = pd.Series(False, index=out.index)
    for col in schema.modelled:
        series = out[col.name]
        isna = series.isna()
        if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN):
            levels = list(col.categories or [])
            series = _match_levels(series, levels)
            outside = ~series.isin(levels) & ~isna
            if outside.any() and RARE_LABEL in levels:  # training merged rare levels into the bucket: so does scoring
                notes.append(f"column {col.name!r}: {int(outside.sum())} value(s) outside the model's levels scored "
                             f"as '{RARE_LABEL}', e.g. {series[outside].unique()[:3].tolist()}")  # fmt: skip
                series = series.mask(outside, RARE_LABEL)
                outside = outside & False
            rule, fix, bad = "known category", "map them to known levels, or retrain on data that has them", outside
        else:
            values = _numeric_values(series, col) if col.kind != ColumnKind.DATETIME else None
            if values is None:
                values = pd.to_datetime(series, format=col.format, errors="coerce")
                unparsed = values.isna().to_numpy() & ~isna.to_numpy()
            else:
                unparsed = np.isnan(values) & ~isna.to_numpy()
            rule = "parses as a date" if col.kind == ColumnKind.DATETIME else "numeric"
            bad, fix = pd.Series(unparsed, index=out.index), "fix or drop those rows"
        if not col.nullable and isna.any():
            failures.append(ValidationFailure(col.name, "not null", int(isna.sum()), [], "the schema says nullable: "
                                              "false", "fill or drop those rows"))  # fmt: skip
            bad_rows |= isna
        if bad.any():
            failures.append(ValidationFailure(col.name, rule, int(bad.sum()), series[bad].unique()[:5].tolist(),
                                              "", fix))  # fmt: skip
            bad_rows |= bad
        out[col.name] = series if col.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN) else out[col.name]
    if failures and strict:
        raise ValidationFailedError(source, failures, outcome="nothing was scored")
    if bad_rows.any():
        notes.append(f"{source}: {int(bad_rows.sum())} row(s) the model cannot read left out")
        out = out[~bad_rows]
    return out, notes


# -------------------------------------------------------------------------------------- rows the model never saw
def split_from_metadata(meta: OutputMetadata) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The run's (training, holdout) rows, rebuilt from its source and split seed; the source must be unchanged.

    Raises:
        InvalidInputError: the source's content changed or the run trained on a sample; pass --reference instead.
    """
    from synthgate.tasks.ingest import data_hash, read_table
    from synthgate.tasks.split import split_holdout

    request = meta.request
    fix = "Fix: pass --reference with rows the model never saw (for example the run's holdout)"
    if meta.n_rows_train + meta.n_rows_holdout != meta.n_rows_input:
        raise InvalidInputError(f"the run trained on a sample of {meta.source}, which cannot be rebuilt. {fix}")
    try:
        frame = read_table(meta.source, table=request.get("table"), encoding=request.get("encoding"),
                           sep=request.get("sep"))  # fmt: skip
    except InvalidInputError as exc:
        raise InvalidInputError(f"the run's source cannot be read to rebuild its holdout ({exc}). {fix}") from exc
    if data_hash(frame) != meta.data_hash:
        raise InvalidInputError(
            f"{meta.source} changed since the model was trained (its content hash differs), so its holdout cannot be "
            f"rebuilt. {fix}"
        )
    return split_holdout(frame, fraction=float(request.get("holdout_fraction", 0.2)), seed=meta.seed)


# ---------------------------------------------------------------------------------------------------- scoring
def source_columns(encoder: TableEncoder) -> dict[str, list[str]]:
    """The source columns behind each encoded column: a fixed combination is one encoded column for several."""
    joints = getattr(encoder.constraints_, "joints_", None) or []
    return {j.columns[0]: list(j.columns) for j in joints}


def rule_breaks(rows: pd.DataFrame, encoder: TableEncoder) -> tuple[np.ndarray, dict[int, list[tuple[str, list[str]]]]]:
    """Rows that break a rule between columns the model holds by construction (`models.encoders.constraints`): a
    bound (`high >= low`) crossed, or a fixed combination never seen in training.

    Returns:
        `(broken, rules)`: an (n,) bool mask, and for each row position that breaks a rule the rules it breaks as
        (description, columns) pairs (rows that break none are absent: a batch holds millions of rows, few broken).
    """
    from synthgate.models.encoders.constraints import _label, _plain
    from synthgate.schemas.constraints import numeric_values

    rules = encoder.constraints_
    broken = np.zeros(len(rows), dtype=bool)
    found: dict[int, list[tuple[str, list[str]]]] = {}
    if rules is None:
        return broken, found
    kinds = {c.name: (c.kind.value, c.format) for c in encoder.schema.columns}
    for gap in rules.gaps_:
        high = numeric_values(rows[gap.column], *kinds[gap.column])
        for low_name in gap.lower:
            low = numeric_values(rows[low_name], *kinds[low_name])
            both = np.isfinite(high) & np.isfinite(low)
            bad = both & ((high <= low) if low_name in gap.strict else (high < low))
            rule = f"{gap.column} {'>' if low_name in gap.strict else '>='} {low_name}"
            for i in np.flatnonzero(bad):
                found.setdefault(int(i), []).append((rule, [gap.column, low_name]))
            broken |= bad
    for joint in rules.joints_:
        seen = {_label(lv) for lv in joint.levels}  # the encoder's own labels of the combinations it was fitted on
        values = rows[joint.columns].astype(object).where(rows[joint.columns].notna(), None)
        # Each distinct combination is labelled once, then its verdict spread to its rows.
        codes = values.groupby(list(joint.columns), dropna=False, sort=False).ngroup().to_numpy()
        firsts = pd.Series(np.arange(len(values))).groupby(codes).first()
        unseen = [g for g, i in firsts.items() if _label([_plain(v) for v in values.iloc[i]]) not in seen]
        rule = (f"{' + '.join(joint.columns)}: a combination unseen in training", list(joint.columns))
        for i in np.flatnonzero(np.isin(codes, unseen)):
            found.setdefault(int(i), []).append(rule)
            broken[i] = True
    return broken, found


@dataclass
class Scored:
    """Per-row scores and per-source-column parts of one frame."""

    score: np.ndarray  # (n,), +inf where a row breaks a rule the model holds (probability zero under it)
    parts: pd.DataFrame  # (n, source columns)
    rules: dict[int, list[tuple[str, list[str]]]] = field(default_factory=dict)  # by row position, those broken

    def top_columns(self, n: int = N_TOP, *, typical: pd.Series | None = None) -> list[list[str]]:
        """Per row, the `n` columns that contribute most to its score beyond `typical` (each column's median part on
        rows the model never saw), largest first; a broken rule's columns lead.

        Without `typical`, a column with many levels always leads: its part is large on every row, however usual.
        """
        names = np.asarray(self.parts.columns)
        return [list(row) for row in names[self.top_indices(n, typical=typical)]]

    def top_indices(self, n: int = N_TOP, *, typical: pd.Series | None = None) -> np.ndarray:
        """`top_columns` as an (rows, min(n, columns)) array of positions in `parts.columns`, sorted in one pass."""
        parts = self.parts if typical is None else self.parts - typical.reindex(self.parts.columns).fillna(0.0)
        top = np.argsort(-parts.to_numpy(), axis=1, kind="stable")[:, :n]
        position = {c: j for j, c in enumerate(self.parts.columns)}
        for i in self.rules:  # the few rows that break a rule
            first = list(dict.fromkeys(position[c] for _, cols in self.rules[i] for c in cols if c in position))
            full = np.argsort(-parts.to_numpy()[i], kind="stable")
            top[i] = (first + [j for j in full if j not in first])[: top.shape[1]]
        return top


def score_rows(scoring: ScoringModel, rows: pd.DataFrame) -> Scored:
    """Encode checked rows (`check_batch`) and score them with the model's own score (`models.scoring`).

    A row that breaks a rule between columns (`rule_breaks`) scores +inf: the model gives it probability zero, as
    it can only generate rows that hold the rules; its top columns are the rule's.
    """
    from synthgate.models.scoring import column_parts

    if not hasattr(scoring.model, "anomaly_scores"):
        raise InvalidInputError(f"model {scoring.name!r} cannot score rows; use gmm, vae, autoencoder, arn or gan")
    broken, rules = rule_breaks(rows, scoring.encoder)
    if broken.any():  # the encoder cannot read an unseen combination: score a seen one, then mark the row impossible
        rows = rows.copy()
        for joint in scoring.encoder.constraints_.joints_:
            for column, value in zip(joint.columns, joint.levels[0], strict=True):
                rows.loc[broken, column] = value
    encoded = scoring.encoder.transform(rows)
    with use_threads(plan_threads()):  # docs/decisions.md#fused-scoring-layers: one thread on two cores
        result = scoring.model.anomaly_scores(encoded)
    names, parts = column_parts(result.features, scoring.encoder.spans_)
    joints = source_columns(scoring.encoder)
    by_source: dict[str, np.ndarray] = {}
    for name, part in zip(names, parts.T, strict=True):
        sources = joints.get(name, [name])
        for source in sources:  # a fixed combination's part is shared by its columns
            by_source[source] = by_source.get(source, 0) + part / len(sources)
    score = np.where(broken, np.inf, result.score.numpy())
    return Scored(score, pd.DataFrame(by_source, index=rows.index), rules)


# ---------------------------------------------------------------------------------------------------- writing
def write_scores(
    frame: pd.DataFrame,
    scored: Scored,
    threshold: Threshold,
    summary: ScoreSummary,
    path: str | Path,
    *,
    typical: pd.Series | None = None,
) -> Path:
    """The batch's rows plus `anomaly_score`, `is_anomaly` and `top_columns` (beyond `typical` parts, see
    `Scored.top_columns`), written atomically with `summary` in the Parquet footer."""
    out = frame.drop(columns=[c for c in SCORE_COLUMNS if c in frame.columns]).reset_index(drop=True)
    out["anomaly_score"] = scored.score
    out["is_anomaly"] = scored.score > threshold.value
    table = pa.Table.from_pandas(out, preserve_index=False)
    top = scored.top_indices(typical=typical)  # (rows, k): built as one Arrow list array, not a Python list per row
    names = pa.array([str(c) for c in scored.parts.columns], type=pa.string()).take(pa.array(top.ravel()))
    offsets = pa.array(np.arange(len(out) + 1, dtype=np.int32) * top.shape[1])
    table = table.append_column("top_columns", pa.ListArray.from_arrays(offsets, names, type=pa.list_(pa.string())))
    meta = {**(table.schema.metadata or {}), SCORE_METADATA_KEY: summary.model_dump_json().encode()}
    with atomic_path(Path(path)) as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp, compression="zstd")
    logger.info("score: wrote %d rows to %s", len(out), path)
    return Path(path)


def read_score_summary(path: str | Path) -> ScoreSummary:
    """The `ScoreSummary` a scores file carries."""
    meta = pq.read_metadata(path).metadata or {}
    if SCORE_METADATA_KEY not in meta:
        raise InvalidInputError(f"{path}: no score summary; was it written by `synthgate score`?")
    return ScoreSummary.model_validate_json(meta[SCORE_METADATA_KEY])


find_model_task = task(name="find-model", cache_policy=NO_CACHE)(find_model)
score_rows_task = task(name="score-rows", cache_policy=NO_CACHE)(score_rows)
write_scores_task = task(name="publish-scores", retries=2, retry_delay_seconds=[1, 5], cache_policy=NO_CACHE)(
    write_scores
)
