"""SQL sources and write-back, on SQLite (always) and a real PostgreSQL (when SYNTHGATE_TEST_POSTGRES_URL is set).

`.ci/run` starts a throwaway server with `.ci/postgres.sh` and sets the variable; a developer without PostgreSQL
still passes, with the PostgreSQL cases skipped and the reason shown by `-ra`.
"""

from __future__ import annotations

import os
import uuid

import pandas as pd
import pytest
import sqlalchemy as sa

from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.ingest import read_table
from synthgate.tasks.sql import STAGE_PREFIX, commit_staged, discard_staged, stage_table, write_table

PG_URL = os.environ.get("SYNTHGATE_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    if not PG_URL:
        pytest.skip("SYNTHGATE_TEST_POSTGRES_URL is not set (run .ci/postgres.sh start, or .ci/run)")
    return PG_URL


@pytest.fixture
def name() -> str:
    return f"t_{uuid.uuid4().hex[:8]}"  # one table per test: the PostgreSQL database is shared by the session


def _tables(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_ingest_reads_a_table_and_a_query(db_url, name, penguins):
    # Arrange
    write_table(penguins, db_url, name)

    # Act
    whole = read_table(db_url, table=name)
    adelie = read_table(db_url, table=f"SELECT species, body_mass_g FROM {name} WHERE species = 'Adelie'")

    # Assert
    assert whole.shape == penguins.shape and list(whole.columns) == list(penguins.columns)
    assert len(adelie) == int((penguins["species"] == "Adelie").sum()) and list(adelie.columns) == [
        "species",
        "body_mass_g",
    ]


def test_write_back_replaces_the_table_and_leaves_no_staging(db_url, name):
    write_table(pd.DataFrame({"a": [1, 2, 3]}), db_url, name)
    write_table(pd.DataFrame({"b": ["x", "y"]}), db_url, name)
    back = read_table(db_url, table=name)
    assert list(back.columns) == ["b"] and back["b"].tolist() == ["x", "y"]
    assert not [t for t in _tables(db_url) if t.startswith(STAGE_PREFIX)]


def test_staged_rows_are_invisible_until_committed_and_discard_keeps_the_old_table(db_url, name):
    # Arrange
    write_table(pd.DataFrame({"v": [1, 2]}), db_url, name)

    # Act: stage new rows, then "fail" before the swap
    staged = stage_table(pd.DataFrame({"v": [7, 8, 9]}), db_url, name)
    during = read_table(db_url, table=name)["v"].tolist()
    discard_staged(staged)

    # Assert
    assert during == [1, 2] and read_table(db_url, table=name)["v"].tolist() == [1, 2]
    assert staged.staging not in _tables(db_url)
    # and a real commit swaps in the new rows
    commit_staged(stage_table(pd.DataFrame({"v": [5]}), db_url, name))
    assert read_table(db_url, table=name)["v"].tolist() == [5]


def test_unreachable_database_names_the_url_and_hides_the_password():
    url = "postgresql+psycopg://user:secret@127.0.0.1:1/nope"
    with pytest.raises(InvalidInputError) as info:
        stage_table(pd.DataFrame({"a": [1]}), url, "t")
    assert "127.0.0.1:1" in str(info.value) and "secret" not in str(info.value)
    assert "check the host, port" in str(info.value)


def test_bad_table_name_is_refused_before_any_write(tmp_path):
    with pytest.raises(InvalidInputError, match="plain table name"):
        write_table(pd.DataFrame({"a": [1]}), f"sqlite:///{tmp_path / 'x.db'}", "t; DROP TABLE users")
