"""Read a table in batches, so a table larger than memory can be profiled, validated and sampled for training.

`read_table` loads a whole table; this module reads the same sources (Parquet row groups through pyarrow, CSV in
chunks, SQL with a `chunksize`) one batch at a time, and builds the three things a run needs from a large input
without holding it:

1. pass one, `profile_source`: the `TableSchema`, merged from per-batch column profiles (`schemas.table.ColumnProfile`);
2. pass two, `scan_source`: GX validation batch by batch (`tasks.validate.BatchValidator`), the row count, the data
   hash, and a uniform sample of at most `max_rows` rows (bottom-k random keys) for training and the holdout.

Both passes give what the whole-table path gives: the same schema, the same validation message, the same data hash;
and, for a table no larger than `max_rows`, the same rows in the same order (tests/test_scale.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.table import ColumnProfile, TableSchema, profile_schema
from synthgate.tasks.ingest import check_width
from synthgate.tasks.reader import FILE_FORMATS, TableReader, is_sql_url, redact
from synthgate.tasks.validate import BatchValidator

logger = logging.getLogger(__name__)

BATCH_ROWS = 262_144  # rows per batch: large enough for vectorised work, small enough to bound memory
MAX_TRAIN_ROWS = 1_000_000  # default --max-train-rows


def count_rows(source: str, *, table: str | None = None) -> int | None:
    """Rows of a Parquet file from its footer (free); None where counting would mean reading (CSV, SQL)."""
    if source.startswith("dataset:") or is_sql_url(source) or not Path(source).is_file():
        return None
    if FILE_FORMATS.get(Path(source).suffix.lower()) != "parquet":
        return None
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(source).metadata.num_rows)
    except Exception:  # an unreadable file fails with a proper message in the scan itself
        return None


def _coerce(batch: pd.DataFrame, dtypes: dict[str, str] | None) -> pd.DataFrame:
    """Give a chunk the table-wide dtypes (a CSV/SQL chunk infers its own: ints where the table has floats)."""
    if not dtypes:
        return batch
    for col, dtype in dtypes.items():
        if col not in batch or str(batch[col].dtype) == dtype:
            continue
        if dtype.startswith("datetime64"):
            batch[col] = pd.to_datetime(batch[col], format="ISO8601").astype(dtype)
        else:
            batch[col] = batch[col].astype(dtype)
    return batch


def scan_table(
    source: str,
    *,
    table: str | None = None,
    batch_rows: int = BATCH_ROWS,
    dtypes: dict[str, str] | None = None,
    encoding: str | None = None,
    sep: str | None = None,
) -> Iterator[pd.DataFrame]:
    """Yield `source` as DataFrames of at most `batch_rows` rows, with `read_table`'s dtypes and column names.

    Args:
        source: a Parquet/CSV path or a SQLAlchemy URL; `dataset:NAME` tables are small and come as one batch.
        table: for SQL, a table name or a SELECT query.
        batch_rows: rows per batch.
        dtypes: the table-wide dtypes (from a first profiling pass); CSV and SQL chunks are cast to them.
        encoding: CSV text encoding (default: detected).
        sep: CSV field separator (default: detected).

    Raises:
        InvalidInputError: as `read_table` does: missing file, unknown format, unreadable content, empty table.
    """
    if batch_rows < 1:
        raise InvalidInputError(f"batch rows must be positive, got {batch_rows}")
    reader = TableReader(source, table=table, encoding=encoding, sep=sep)
    offset = 0
    for batch in reader.batches(batch_rows):
        if batch.empty:
            continue
        batch.index = pd.RangeIndex(offset, offset + len(batch))
        offset += len(batch)
        yield _coerce(batch, dtypes)
    if offset == 0:
        raise InvalidInputError(f"{reader.display}: the table is empty (0 rows)")


# ------------------------------------------------------------------------------------------------ pass one
def profile_batches(batches: Iterator[pd.DataFrame], *, name: str = "table") -> TableSchema:
    """The `TableSchema` of a table given in batches: what `infer_schema` gives on the whole table."""
    profiles: dict[str, ColumnProfile] = {}
    for batch in batches:
        if not profiles:
            bad = [c for c in batch.columns if not isinstance(c, str)]
            if bad:
                raise InvalidInputError(f"table {name!r}: column names must be strings, got {bad[:5]}")
            profiles = {c: ColumnProfile(c) for c in batch.columns}
        for col, profile in profiles.items():
            profile.update(batch[col])
    return profile_schema(list(profiles.values()), name=name)


def profile_source(
    source: str,
    *,
    table: str | None = None,
    name: str = "table",
    batch_rows: int = BATCH_ROWS,
    encoding: str | None = None,
    sep: str | None = None,
) -> TableSchema:
    """Pass one over `source`: its inferred schema, with bounded memory."""
    batches = scan_table(source, table=table, batch_rows=batch_rows, encoding=encoding, sep=sep)
    schema = profile_batches(batches, name=name)
    check_width(len(schema.columns), redact(source))
    logger.info("scan: profiled %s: %d rows x %d columns", redact(source), schema.n_rows, len(schema.columns))
    return schema


# ------------------------------------------------------------------------------------------------ pass two
class UniformSample:
    """A uniform sample without replacement of at most `max_rows` rows from batches, in the table's row order.

    Each row gets a random key from one seeded stream; the rows with the `max_rows` smallest keys are kept (a bottom-k
    sample). The key stream does not depend on the batch size, so neither does the sample; a table of at most
    `max_rows` rows is kept whole, in order.
    """

    def __init__(self, max_rows: int, *, seed: int):
        if max_rows < 1:
            raise InvalidInputError(f"max rows must be positive, got {max_rows}")
        self.max_rows = max_rows
        self._rng = np.random.default_rng(seed)
        self._parts: list[pd.DataFrame] = []
        self._keys: list[np.ndarray] = []
        self._held = 0

    def add(self, batch: pd.DataFrame) -> None:
        self._parts.append(batch)
        self._keys.append(self._rng.random(len(batch)))
        self._held += len(batch)
        if self._held > 2 * self.max_rows:  # compact now and then: amortised linear, at most 2x max_rows held
            self._compact()

    def _compact(self) -> None:
        keys = np.concatenate(self._keys)
        frame = pd.concat(self._parts)
        if len(frame) > self.max_rows:
            keep = np.sort(np.argpartition(keys, self.max_rows)[: self.max_rows])
            frame, keys = frame.iloc[keep], keys[keep]
        self._parts, self._keys, self._held = [frame], [keys], len(frame)

    def result(self) -> pd.DataFrame:
        """The sampled rows in table order, with a fresh 0..n-1 index."""
        if not self._parts:
            raise InvalidInputError("no rows to sample")
        self._compact()
        return self._parts[0].sort_index().reset_index(drop=True)


@dataclass
class ScanResult:
    """What pass two learned: the whole table's row count and hash, and the uniform sample the run trains on."""

    sample: pd.DataFrame
    n_rows: int
    data_hash: str
    n_batches: int


def scan_source(
    source: str,
    schema: TableSchema,
    *,
    table: str | None = None,
    display: str | None = None,
    max_rows: int = MAX_TRAIN_ROWS,
    seed: int = 0,
    batch_rows: int = BATCH_ROWS,
    encoding: str | None = None,
    sep: str | None = None,
) -> ScanResult:
    """Pass two: validate every batch against `schema`, hash the table and keep a uniform sample of `max_rows` rows.

    Raises:
        ValidationFailedError: after the last batch, with every failure aggregated over all batches, in the message
            format of `tasks.validate.validate_table`.
    """
    dtypes = {c.name: c.dtype for c in schema.columns}
    validator = BatchValidator(schema, source=display or source)
    sample = UniformSample(max_rows, seed=seed)
    digest, hashed_dtypes = hashlib.sha256(), False
    n_rows = n_batches = 0
    for batch in scan_table(source, table=table, batch_rows=batch_rows, dtypes=dtypes, encoding=encoding, sep=sep):
        if not hashed_dtypes:  # `tasks.ingest.data_hash`, fed batch by batch: row hashes do not depend on batching
            digest.update(repr([(c, str(t)) for c, t in batch.dtypes.items()]).encode())
            hashed_dtypes = True
        digest.update(pd.util.hash_pandas_object(batch, index=False).to_numpy().tobytes())
        validator.add(batch)
        sample.add(batch)
        n_rows += len(batch)
        n_batches += 1
    validator.finish()
    result = sample.result()
    logger.info(
        "scan: %s: %d rows in %d batches validated; %d rows sampled for training",
        display,
        n_rows,
        n_batches,
        len(result),
    )
    return ScanResult(sample=result, n_rows=n_rows, data_hash=digest.hexdigest(), n_batches=n_batches)


def resolve_profiled_schema(inferred: TableSchema, schema_path: Path | None) -> TableSchema:
    """`tasks.preprocess.resolve_schema` for a profiled schema: a user file is a full contract or overrides."""
    from pydantic import ValidationError

    from synthgate.schemas.table import _read_yaml

    if schema_path is None:
        return inferred
    data = _read_yaml(schema_path)
    try:
        return TableSchema.model_validate(data)
    except ValidationError:
        return inferred.with_overrides(data)


def stream_input(source: str, *, table: str | None, max_rows: int, min_bytes: int) -> bool:
    """Whether a run should take the streaming path: the input has more rows than training may use, or is big."""
    n_rows = count_rows(source, table=table)
    if n_rows is not None and n_rows > max_rows:
        return True
    path = Path(source)
    return not is_sql_url(source) and path.is_file() and path.stat().st_size > min_bytes


profile_source_task = task(name="profile", cache_policy=NO_CACHE)(profile_source)
scan_source_task = task(name="scan-validate-sample", cache_policy=NO_CACHE)(scan_source)
