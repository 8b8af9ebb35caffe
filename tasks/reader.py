"""The one table reader: CSV, Parquet, SQL and packaged datasets, read whole or in batches, tidied the same way.

Whole-table ingest (`tasks.ingest.read_table`) and the batched scan (`tasks.scan.scan_table`) both read through
`TableReader`, so a file gives the same columns, dtypes and errors whichever path a run takes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.dialect import CsvDialect, header_names, sniff_csv

logger = logging.getLogger(__name__)

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
DATASETS = ("penguins", "breast_cancer", "diabetes", "iris", "wine")
_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$")


def is_sql_url(source: str) -> bool:
    """Whether `source` is a SQLAlchemy URL (`scheme://...`) rather than a path or `dataset:NAME`."""
    return bool(re.match(r"^[a-z][a-z0-9+]*://", source)) and not source.startswith("file://")


def redact(url: str) -> str:
    """`url` with its password masked: never print a database password."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def file_format(source: str) -> str:
    """The format ("csv" or "parquet") of a table file, or the input error a user should see: missing, a directory,
    or an unknown suffix. One check shared by whole-table ingest, batched scans and the CLI's pre-flight."""
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"{source}: file not found; check the path (relative to {Path.cwd()})")
    if path.is_dir():
        raise InvalidInputError(f"{source}: is a directory; for images use `synthgate images`, for tables give a file")
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        csv = ", ".join(k for k, v in FILE_FORMATS.items() if v == "csv")
        raise InvalidInputError(
            f"{source}: unknown format {path.suffix!r}; give a CSV ({csv}) or Parquet (.parquet) file, "
            "or a SQLAlchemy URL"
        )
    return fmt


def load_dataset(name: str) -> pd.DataFrame:
    """Real tables shipped inside installed packages: nothing is downloaded."""
    if name == "penguins":
        from palmerpenguins import load_penguins

        return load_penguins()
    if name not in DATASETS:
        raise InvalidInputError(f"unknown dataset {name!r}; choose one of {list(DATASETS)}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, f"load_{name}")(as_frame=True)
    frame = bunch.frame.copy()
    if "target_names" in bunch and name != "diabetes":
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names))).astype("str")
    return frame


class TableReader:
    """Reads one source whole (`read`) or in batches (`batches`), with one set of rules and error messages.

    Args:
        source: a CSV/Parquet path, a SQLAlchemy URL or `dataset:NAME`.
        table: for SQL, a table name or a SELECT query.
        encoding: CSV text encoding; None detects it (`tasks.dialect`).
        sep: CSV field separator; None detects it.
    """

    def __init__(self, source: str, *, table: str | None = None, encoding: str | None = None, sep: str | None = None):
        self.source = source
        self.table = table
        self.encoding = encoding
        self.sep = sep
        self._noted: set[str] = set()  # columns already warned about, so batches do not repeat a note

    @property
    def display(self) -> str:
        return redact(self.source)

    def read(self) -> pd.DataFrame:
        """The whole table, tidied (see `tidy`), with a fresh 0..n-1 index."""
        frame = next(self._frames(None))
        return self.tidy(frame).reset_index(drop=True)

    def batches(self, batch_rows: int) -> Iterator[pd.DataFrame]:
        """The table in frames of at most `batch_rows` rows, each tidied as `read` tidies the whole."""
        for frame in self._frames(batch_rows):
            yield self.tidy(frame)

    # ---------------------------------------------------------------------------------------------- sources
    def _frames(self, chunksize: int | None) -> Iterator[pd.DataFrame]:
        if self.source.startswith("dataset:"):
            yield load_dataset(self.source.split(":", 1)[1])
            return
        if is_sql_url(self.source):
            yield from self._sql_frames(chunksize)
            return
        fmt = file_format(self.source)
        try:
            if fmt == "parquet":
                import pyarrow.parquet as pq

                self._check_header(pq.read_schema(self.source).names)  # pyarrow fails on repeats with a cryptic error
                yield from _parquet_frames(self.source, chunksize)
            else:
                yield from self._csv_frames(chunksize)
        except InvalidInputError:
            raise
        except pd.errors.EmptyDataError as exc:
            raise InvalidInputError(
                f"{self.source}: the file is empty; it needs a header row and at least one data row"
            ) from exc
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            raise InvalidInputError(
                f"{self.source}: cannot be read as {fmt} ({exc}); check the file's format"
                + ("; --sep and --encoding set the separator and encoding" if fmt == "csv" else "")
            ) from exc

    def _csv_frames(self, chunksize: int | None) -> Iterator[pd.DataFrame]:
        dialect = sniff_csv(self.source, encoding=self.encoding, sep=self.sep)
        self._check_header(header_names(self.source, dialect))
        try:
            yield from _csv_chunks(self.source, dialect, chunksize)
        except UnicodeDecodeError as exc:
            if not dialect.encoding_detected:
                raise InvalidInputError(
                    f"{self.source}: byte {exc.object[exc.start : exc.start + 1]!r} at offset {exc.start} of a chunk "
                    f"is not {dialect.encoding}; pass the file's encoding with --encoding (e.g. cp1252, latin-1)"
                ) from exc
            if chunksize is not None:  # batches already handed on cannot be read again in another encoding
                raise InvalidInputError(
                    f"{self.source}: not {dialect.encoding} past its first {1 << 20} bytes ({exc.reason}); pass "
                    "--encoding cp1252 (Excel, western Europe) or the file's encoding"
                ) from exc
            fallback = CsvDialect("cp1252" if dialect.encoding.startswith("utf-8") else "latin-1", dialect.sep)
            logger.warning("csv: %s is not %s past its start; read as %s", self.source, dialect.encoding, fallback)
            yield from _csv_chunks(self.source, fallback, chunksize)

    def _check_header(self, names: list[str]) -> None:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InvalidInputError(
                f"{self.display}: duplicate column name(s) {repeated}; each column needs its own name. "
                "Fix: rename or drop the repeated columns in the source"
            )

    def _sql_frames(self, chunksize: int | None) -> Iterator[pd.DataFrame]:
        import sqlalchemy as sa

        url, table = self.source, self.table
        if not table:
            raise InvalidInputError(f"{redact(url)}: a SQL source needs --table NAME or --table 'SELECT ...'")
        try:
            engine = sa.create_engine(url)
        except Exception as exc:  # bad driver name, malformed URL
            raise InvalidInputError(f"{redact(url)}: not a usable SQLAlchemy URL ({exc})") from exc
        query = table if table.strip().lower().startswith(("select", "with")) else None
        try:
            with engine.connect() as conn:
                if query is None:
                    if not sa.inspect(conn).has_table(table):
                        names = sa.inspect(conn).get_table_names()
                        raise InvalidInputError(f"{redact(url)}: no table {table!r}; tables are {names}")
                    frames = pd.read_sql_table(table, conn, chunksize=chunksize)
                else:
                    frames = pd.read_sql_query(sa.text(query), conn, chunksize=chunksize)
                yield from ([frames] if chunksize is None else frames)
        except InvalidInputError:
            raise
        except sa.exc.OperationalError as exc:
            raise InvalidInputError(
                f"{redact(url)}: cannot reach the database ({exc.orig}); check the host, port, credentials and that "
                "the server is running"
            ) from exc
        except sa.exc.SQLAlchemyError as exc:
            raise InvalidInputError(f"{redact(url)}: query failed: {exc}") from exc
        finally:
            engine.dispose()

    # ---------------------------------------------------------------------------------------------- tidying
    def tidy(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Give a freshly read frame what every later step assumes, or say clearly why it cannot have it.

        Column names become strings and must be unique. Infinite numbers become missing values, and a column holding
        values of several Python types (SQL, object columns) becomes text: both with a logged note naming the column
        and example rows (docs/decisions.md#messy-values).
        """
        frame.columns = [str(c) for c in frame.columns]
        self._check_header(list(frame.columns))
        for col in frame.columns:
            series = frame[col]
            if pd.api.types.is_float_dtype(series.dtype):
                frame[col] = self._finite(col, series)
            elif series.dtype == object:
                frame[col] = self._one_type(col, series)
            if pd.api.types.is_string_dtype(frame[col].dtype) or frame[col].dtype == object:
                self._note_numeric_text(col, frame[col])
        return frame

    def _note(self, col: str, message: str, *args: object) -> None:
        if col not in self._noted:
            self._noted.add(col)
            logger.warning(message, *args)

    def _finite(self, col: str, series: pd.Series) -> pd.Series:
        values = series.to_numpy(dtype=float, na_value=np.nan)
        infinite = np.isinf(values)
        if not infinite.any():
            return series
        rows = series.index[infinite][:5].tolist()
        self._note(
            col,
            "%s: column %r holds %d infinite value(s) (rows %s); they are read as missing values",
            self.display,
            col,
            int(infinite.sum()),
            rows,
        )
        return series.mask(infinite)

    def _one_type(self, col: str, series: pd.Series) -> pd.Series:
        non_null = series.dropna()
        kinds = non_null.map(type)
        if kinds.nunique() <= 1:
            return series
        if all(issubclass(t, int | float | np.number) and not issubclass(t, bool) for t in kinds.unique()):
            return pd.to_numeric(series)  # ints beside floats (SQLite's per-value types) are just numbers
        counts = kinds.value_counts()
        minority = non_null[kinds != counts.index[0]]
        examples = ", ".join(f"row {i}: {v!r}" for i, v in minority.head(3).items())
        self._note(
            col,
            "%s: column %r mixes value types (%s; %s); it is read as text",
            self.display,
            col,
            ", ".join(f"{n} {t.__name__}" for t, n in counts.items()),
            examples,
        )
        return series.map(lambda v: v if pd.isna(v) else str(v)).astype("str")

    def _note_numeric_text(self, col: str, series: pd.Series) -> None:
        """A text column whose values are mostly numbers: say which rows kept it from being numeric."""
        sample = series.dropna().head(10_000).astype(str)
        if sample.empty:
            return
        numeric = sample.str.match(_NUMBER)
        if numeric.mean() < 0.9 or numeric.all():
            return
        bad = sample[~numeric]
        examples = ", ".join(f"row {i}: {v!r}" for i, v in bad.head(3).items())
        self._note(
            col,
            "%s: column %r is mostly numbers but some values are not (%s); it is read as text. To model it as "
            "numbers, clean those values or leave them empty",
            self.display,
            col,
            examples,
        )


def _csv_chunks(path: str, dialect: CsvDialect, chunksize: int | None) -> Iterator[pd.DataFrame]:
    chunks = pd.read_csv(path, sep=dialect.sep, encoding=dialect.encoding, chunksize=chunksize)
    yield from [chunks] if chunksize is None else chunks


def _parquet_frames(path: str, chunksize: int | None) -> Iterator[pd.DataFrame]:
    if chunksize is None:
        yield pd.read_parquet(path)
        return
    import pyarrow.parquet as pq

    for record_batch in pq.ParquetFile(path).iter_batches(batch_size=chunksize):
        yield record_batch.to_pandas()
