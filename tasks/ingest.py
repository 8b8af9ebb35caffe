"""Read a table from a file, a SQL database or a dataset shipped inside an installed package."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.retry import retry_on_transient

logger = logging.getLogger(__name__)

FILE_FORMATS = {".csv": "csv", ".tsv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$")


def _load_dataset(name: str) -> pd.DataFrame:
    """Real tables shipped inside packages: nothing is downloaded."""
    if name == "penguins":
        from palmerpenguins import load_penguins

        return load_penguins()
    loaders = {
        "wine": "load_wine",
        "breast_cancer": "load_breast_cancer",
        "diabetes": "load_diabetes",
        "iris": "load_iris",
    }
    if name not in loaders:
        raise InvalidInputError(f"unknown dataset {name!r}; choose one of {['penguins', *sorted(loaders)]}")
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, loaders[name])(as_frame=True)
    frame = bunch.frame.copy()
    if "target_names" in bunch and name != "diabetes":
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names))).astype("str")
    return frame


def is_sql_url(source: str) -> bool:
    return bool(re.match(r"^[a-z][a-z0-9+]*://", source)) and not source.startswith("file://")


def _read_sql(url: str, table: str | None) -> pd.DataFrame:
    import sqlalchemy as sa

    if not table:
        raise InvalidInputError(f"{_redact(url)}: a SQL source needs --table NAME or --table 'SELECT ...'")
    try:
        engine = sa.create_engine(url)
    except Exception as exc:  # bad driver name, malformed URL
        raise InvalidInputError(f"{_redact(url)}: not a usable SQLAlchemy URL ({exc})") from exc
    query = table if table.strip().lower().startswith(("select", "with")) else None
    try:
        with engine.connect() as conn:
            if query is None:
                if not sa.inspect(conn).has_table(table):
                    names = sa.inspect(conn).get_table_names()
                    raise InvalidInputError(f"{_redact(url)}: no table {table!r}; tables are {names}")
                return pd.read_sql_table(table, conn)
            return pd.read_sql_query(sa.text(query), conn)
    except InvalidInputError:
        raise
    except sa.exc.OperationalError as exc:
        raise InvalidInputError(
            f"{_redact(url)}: cannot reach the database ({exc.orig}); check the host, port, credentials and that the "
            "server is running"
        ) from exc
    except sa.exc.SQLAlchemyError as exc:
        raise InvalidInputError(f"{_redact(url)}: query failed: {exc}") from exc
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    """Never print a database password."""
    return re.sub(r"://([^:/@]+):[^@]+@", r"://\1:***@", url)


def _parse_date_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """CSV has no types: turn string columns whose every value is an ISO date/time into datetimes."""
    for col in frame.columns:
        series = frame[col]
        if not (pd.api.types.is_string_dtype(series) or series.dtype == object):
            continue
        values = series.dropna().astype(str)
        if len(values) and values.head(200).str.match(_ISO_DATE).all() and values.str.match(_ISO_DATE).all():
            try:
                frame[col] = pd.to_datetime(series, format="ISO8601")
            except (ValueError, TypeError):
                continue
    return frame


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


def read_table(source: str, *, table: str | None = None) -> pd.DataFrame:
    """Read `source` (CSV/Parquet path, SQLAlchemy URL, or `dataset:NAME`) into a DataFrame.

    Raises:
        InvalidInputError: missing file, unknown format, unreadable content, unreachable database or an empty table;
            the message names the source and what to do.
    """
    if source.startswith("dataset:"):
        frame = _load_dataset(source.split(":", 1)[1])
    elif is_sql_url(source):
        frame = _read_sql(source, table)
    else:
        path = Path(source)
        fmt = file_format(source)
        try:
            if fmt == "parquet":
                frame = pd.read_parquet(path)
            else:
                frame = _parse_date_columns(pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ","))
        except pd.errors.EmptyDataError as exc:
            raise InvalidInputError(
                f"{source}: the file is empty; it needs a header row and at least one data row"
            ) from exc
        except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
            raise InvalidInputError(f"{source}: cannot be read as {fmt} ({exc}); check the file's format") from exc
    if frame.empty or frame.shape[1] == 0:
        raise InvalidInputError(
            f"{_redact(source)}: the table is empty ({frame.shape[0]} rows, {frame.shape[1]} columns)"
        )
    frame.columns = [str(c) for c in frame.columns]
    logger.info("ingest: %s -> %d rows x %d columns", _redact(source), *frame.shape)
    return frame.reset_index(drop=True)


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a table's content: column names, dtypes and values (row order matters, the index does not)."""
    digest = hashlib.sha256()
    digest.update(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


read_table_task = task(
    name="ingest", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE
)(read_table)
