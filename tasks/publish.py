"""Publish synthetic rows as Parquet, atomically, with the run's metadata inside the file.

A reader never sees a half-written file: we write a temporary file in the same directory and `os.replace` it onto the
target, which is atomic on POSIX filesystems. The metadata (request, seed, model, data hash, metrics, verdicts,
privacy budget) travels in the Parquet key-value metadata, so the file explains itself.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.metadata import METADATA_KEY, OutputMetadata
from synthgate.tasks.retry import retry_on_transient

logger = logging.getLogger(__name__)


def temporary_prefix(path: Path) -> str:
    """Hidden, and naming the writing process, so a later run can tell a dead run's leftovers from a live write."""
    return f".{Path(path).name}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temporaries(*paths: Path | None) -> list[Path]:
    """Delete temporary files of ours beside `paths` whose writer is dead (a killed run); return what was removed.

    A run killed with SIGKILL cannot clean up; the next run to the same output does. A file written by a process
    that still runs (another run to the same directory) is left alone.
    """
    removed = []
    for path in (Path(p) for p in paths if p is not None):
        if not path.parent.is_dir():
            continue
        for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
            pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
            if pid.isdigit() and _alive(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    if removed:
        logger.warning("removed %d temporary file(s) left by an interrupted run: %s", len(removed), removed)
    return removed


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on any error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; a published file gets the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_text_atomic(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def to_arrow(frame: pd.DataFrame, metadata: OutputMetadata) -> pa.Table:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    payload = metadata.model_dump_json(by_alias=True).encode()
    return table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: payload})


def write_parquet(frame: pd.DataFrame, path: Path, metadata: OutputMetadata) -> Path:
    """Write `frame` with `metadata` to `path` atomically; pandas dtypes survive the round trip."""
    with atomic_path(path) as tmp:
        pq.write_table(to_arrow(frame, metadata), tmp, compression="zstd")
    logger.info("publish: wrote %d rows to %s", len(frame), path)
    return Path(path)


class StagedParquet:
    """A Parquet file written in row groups as rows are generated, published only once the gates have passed.

    The rows go to a temporary file beside the target as they come (memory stays at one batch, whatever the row
    count). The run metadata is known only after the gates, which look at a sample of those rows, so it is added to
    the footer at `commit`: Parquet keeps key-value metadata in the footer, which `ParquetWriter` writes at close.
    `commit` then renames the file onto the target (atomic, as `write_parquet`); `discard` (a refusal or an error)
    deletes it, so a refused run publishes nothing.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temporary_prefix(self.path), suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        self.n_rows = 0
        self._writer: pq.ParquetWriter | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Append `frame` as one row group; every batch must have the first one's columns and dtypes."""
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.tmp, table.schema, compression="zstd")
        elif not table.schema.equals(self._writer.schema, check_metadata=False):
            table = table.cast(self._writer.schema)  # e.g. a batch whose text column is all null
        self._writer.write_table(table)
        self.n_rows += len(frame)

    def commit(self, metadata: OutputMetadata) -> Path:
        """Add the run metadata, close the file and move it onto the target path."""
        if self._writer is None:
            raise InvalidInputError("no rows were written; nothing to publish")
        try:
            self._writer.add_key_value_metadata({METADATA_KEY: metadata.model_dump_json(by_alias=True).encode()})
            self._writer.close()
            self._writer = None
            os.replace(self.tmp, self.path)
        except BaseException:
            self.discard()
            raise
        logger.info("publish: wrote %d rows in row groups to %s", self.n_rows, self.path)
        return self.path

    def __del__(self) -> None:
        # A run that raised between sampling and publishing leaves no temporary file behind.
        self.discard()

    def discard(self) -> None:
        """Close and delete the temporary file (idempotent)."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
            self._writer = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def read_metadata(path: str | Path) -> OutputMetadata:
    """The run metadata of a Parquet file that synthgate published."""
    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: file not found")
    try:
        # The footer's key-value metadata: it holds the Arrow schema's metadata (`write_parquet`) and the key that
        # `StagedParquet.commit` adds at close, which the stored Arrow schema does not carry.
        meta = pq.read_metadata(path).metadata or {}
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    if METADATA_KEY not in meta:
        raise InvalidInputError(f"{path}: no synthgate metadata; was it written by `synthgate run`?")
    return OutputMetadata.model_validate(json.loads(meta[METADATA_KEY]))


write_parquet_task = task(
    name="publish", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE
)(write_parquet)
