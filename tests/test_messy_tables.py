"""Any table shape ends in exit 0, 2 or 3 with one clean screen: the real `synthgate run`, in process, on messy tables.

The terminal is what the CLI prints plus what Prefect's console handler prints (task and flow failure logs with
their tracebacks), so each test captures both.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from faker import Faker
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from synthgate.flows.cli import EXIT_BAD_INPUT, EXIT_BUG, EXIT_OK, EXIT_REFUSED, app
from synthgate.flows.failures import _HideRunFailures, as_expected
from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.ingest import MAX_COLUMNS, read_table
from synthgate.tasks.split import split_holdout_task
from tests.terminal import prefect_console

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()
CLEAN_EXITS = {EXIT_OK, EXIT_BAD_INPUT, EXIT_REFUSED}


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and the whole terminal (the command's own output and Prefect's console logs)."""
    with prefect_console() as logs:
        outcome = runner.invoke(app, ["run", *args])
    return outcome.exit_code, logs.getvalue() + outcome.output


def assert_published_whole(source: Path, output: Path, **read: str) -> None:
    """The published file has the source's columns, in order, with the dtypes the source was read with."""
    real, synthetic = read_table(str(source), **read), pd.read_parquet(output)
    assert list(synthetic.columns) == list(real.columns)
    assert synthetic.dtypes.astype(str).tolist() == real.dtypes.astype(str).tolist()


# ------------------------------------------------------------------------------------------------ one screen
@pytest.mark.slow
def test_a_refusal_prints_one_block_and_the_prefect_run_still_fails_with_the_message(tmp_path):
    # Arrange
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    config = tmp_path / "request.yaml"
    config.write_text(
        f"input: dataset:iris\noutput: {tmp_path / 'o.parquet'}\nthresholds: {{column_shapes_min: 1.0}}\n"
    )

    # Act
    code, terminal = run_cli("--config", str(config))

    # Assert
    assert code == EXIT_REFUSED, terminal
    assert "Traceback" not in terminal and "REFUSED" in terminal and "column_shapes" in terminal
    with get_client(sync_client=True) as client:
        latest = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    assert latest.state.is_failed() and "gates refused" in latest.state.message


def test_bad_input_found_inside_the_flow_prints_file_column_rule_and_fix_without_traceback(penguins, tmp_path):
    # Arrange: a schema contract that the data breaks
    data = tmp_path / "penguins.csv"
    penguins.to_csv(data, index=False)
    schema = tmp_path / "schema.yaml"
    schema.write_text("columns:\n  body_mass_g: {maximum: 5000}\n")

    # Act
    code, terminal = run_cli("-i", str(data), "-o", str(tmp_path / "o.parquet"), "--schema", str(schema))

    # Assert
    assert code == EXIT_BAD_INPUT and "Traceback" not in terminal
    text = " ".join(terminal.split())
    assert "penguins.csv" in text and "body_mass_g" in text and "Fix:" in text


def test_an_unexpected_error_prints_one_line_and_the_log_holding_the_traceback(tmp_path, monkeypatch):
    # Arrange: a bug inside one task of the flow
    def broken(*args, **kwargs):
        raise RuntimeError("boom in split")

    monkeypatch.setattr(split_holdout_task, "fn", broken)
    monkeypatch.setenv("SYNTHGATE_LOG_DIR", str(tmp_path / "logs"))

    # Act
    code, terminal = run_cli("-i", "dataset:iris", "-o", str(tmp_path / "o.parquet"))

    # Assert
    assert code == EXIT_BUG and "Traceback" not in terminal
    assert "unexpected error: RuntimeError: boom in split" in " ".join(terminal.split())
    (log,) = (tmp_path / "logs").glob("synthgate-*.log")
    assert str(log) in terminal.replace("\n", "")
    assert "Traceback" in log.read_text() and "boom in split" in log.read_text()


def test_an_unreachable_prefect_server_is_an_input_error_with_the_fix():
    error = as_expected(RuntimeError("Failed to reach API at http://127.0.0.1:1/api/"))
    assert isinstance(error, InvalidInputError) and "prefect server start" in str(error)
    assert isinstance(as_expected(ValueError("a bug")), ValueError)


def test_only_failed_runs_records_are_kept_off_the_console():
    hide = _HideRunFailures()

    def record(name: str, level: int, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, msg, None, None)

    assert not hide.filter(record("prefect.task_runs", logging.ERROR, "Task run failed with exception"))
    assert not hide.filter(record("prefect.flow_runs", logging.INFO, "Finished in state Failed('x')"))
    assert hide.filter(record("prefect.flow_runs", logging.INFO, "Finished in state Completed()"))
    assert hide.filter(record("synthgate.tasks.reader", logging.WARNING, "column 'a' holds infinite values"))


# ------------------------------------------------------------------------------------------------ shapes
def _shapes(n: int = 120) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    base = pd.DataFrame(
        {
            "amount": np.round(rng.normal(50, 10, n), 2),
            "count": rng.integers(0, 5, n),
            "group": rng.choice(list("xyz"), n),
        }
    )
    return {
        "all_null_column": base.assign(empty=np.nan),
        "all_null_table": pd.DataFrame({"x": [np.nan] * n, "y": [np.nan] * n}),
        "constant_columns": base.assign(country="FR", version=3),
        "constant_table": pd.DataFrame({"country": ["FR"] * n, "version": [3] * n}),
        "one_column": base[["amount"]],
        "infinite_values": base.assign(amount=np.where(rng.random(n) < 0.05, np.inf, base["amount"])),
        "unicode_long_names": base.set_axis(["Größe (€) — naïve ✓", "顧客番号", "n" * 300], axis=1),
        "one_value_per_row": base.assign(ticket=[f"T{i:05d}" for i in range(n)]),
        "mixed_types": base.assign(income=[str(v) for v in range(n - 3)] + ["n/a?", "-", "unknown"]),
    }


@pytest.mark.slow
@pytest.mark.parametrize("shape", sorted(_shapes()))
def test_every_listed_shape_ends_in_a_clean_exit_and_a_whole_output(shape, tmp_path):
    # Arrange
    source, output = tmp_path / f"{shape}.csv", tmp_path / "out.parquet"
    _shapes()[shape].to_csv(source, index=False)

    # Act
    code, terminal = run_cli("-i", str(source), "-o", str(output))

    # Assert
    assert code in CLEAN_EXITS, terminal
    assert "Traceback" not in terminal
    if code == EXIT_OK:
        assert_published_whole(source, output)
    else:
        assert "BAD INPUT" in terminal or "REFUSED" in terminal


def test_duplicate_column_names_exit_2_naming_them(tmp_path):
    source = tmp_path / "dup.csv"
    source.write_text("id,amount,amount\n" + "".join(f"{i},{i * 1.5},{i * 2.5}\n" for i in range(50)))
    code, terminal = run_cli("-i", str(source), "-o", str(tmp_path / "o.parquet"))
    assert code == EXIT_BAD_INPUT and "Traceback" not in terminal
    assert "duplicate column name(s) ['amount']" in " ".join(terminal.split())


@pytest.mark.slow
def test_thousands_of_columns_are_refused_before_any_work_saying_how_to_narrow_the_table(tmp_path):
    # Arrange: 2,000 numeric columns x 300 rows
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(np.round(rng.normal(size=(300, 2000)), 3), columns=[f"m{i}" for i in range(2000)])
    source = tmp_path / "wide.csv"
    frame.to_csv(source, index=False)

    # Act
    code, terminal = run_cli("-i", str(source), "-o", str(tmp_path / "o.parquet"))

    # Assert
    assert code == EXIT_BAD_INPUT and "Traceback" not in terminal
    assert f"2000 columns; one run synthesises at most {MAX_COLUMNS}" in " ".join(terminal.split())
    assert not (tmp_path / "o.html").exists()


# ------------------------------------------------------------------------------------------------ exports
def _accented_customers(penguins: pd.DataFrame, n: int | None = None) -> pd.DataFrame:
    """Penguins (a table the default model publishes) with the accented names and cities of a European export."""
    fake = Faker(["fr_FR", "de_DE", "es_ES"])
    Faker.seed(11)
    frame = penguins.head(n).copy() if n else penguins.copy()
    frame.insert(0, "keeper", [fake.name() for _ in range(len(frame))])
    frame.insert(1, "zoo_city", [fake.city() for _ in range(len(frame))])
    frame.loc[0, "keeper"] = "José Müller"
    return frame


@pytest.mark.slow
def test_a_cp1252_semicolon_export_publishes_like_the_utf8_file(penguins, tmp_path):
    # Arrange
    frame = _accented_customers(penguins)
    utf8, excel = tmp_path / "customers.csv", tmp_path / "customers_excel.csv"
    frame.to_csv(utf8, index=False)
    frame.to_csv(excel, sep=";", encoding="cp1252", index=False)

    # Act
    code, terminal = run_cli("-i", str(excel), "-o", str(tmp_path / "b.parquet"))

    # Assert: the export reads to the very frame the UTF-8 file gives, and publishes it whole, in its dtypes
    assert code == EXIT_OK, terminal
    source = read_table(str(utf8))
    pd.testing.assert_frame_equal(source, read_table(str(excel)))
    out = pd.read_parquet(tmp_path / "b.parquet")
    assert list(out.columns) == list(source.columns) and out.dtypes.equals(source.dtypes)


def test_encoding_and_separator_from_a_request_file_are_used(penguins, tmp_path):
    # Arrange: a pipe-separated latin-1 file and a request that names both
    frame = _accented_customers(penguins, 60)
    source = tmp_path / "c.txt"
    frame.to_csv(source, sep="|", encoding="latin-1", index=False)
    config = tmp_path / "request.yaml"
    config.write_text(f"input: {source}\noutput: {tmp_path / 'o.parquet'}\nencoding: utf-8\nsep: '|'\n")

    # Act: the request's utf-8 is wrong for this file, so it must be the one used
    code, terminal = run_cli("--config", str(config))

    # Assert
    assert code == EXIT_BAD_INPUT and "Traceback" not in terminal
    assert "--encoding" in terminal


# ------------------------------------------------------------------------------------------------ property
_KINDS = ("float", "float_nulls", "float_inf", "int", "constant", "category", "per_row", "all_null", "mixed", "bool")


def _column(kind: str, n: int, rng: np.random.Generator) -> list | np.ndarray:
    values = {
        "float": lambda: np.round(rng.normal(0, 1, n), 3),
        "float_nulls": lambda: np.where(rng.random(n) < 0.3, np.nan, rng.normal(5, 2, n)),
        "float_inf": lambda: np.where(rng.random(n) < 0.1, np.inf, rng.normal(5, 2, n)),
        "int": lambda: rng.integers(-3, 1000, n),
        "constant": lambda: ["same"] * n,
        "category": lambda: rng.choice(["a", "bé", "ç"], n),
        "per_row": lambda: [f"v{i}" for i in range(n)],
        "all_null": lambda: [np.nan] * n,
        "mixed": lambda: [str(i) if i % 4 else "x" for i in range(n)],
        "bool": lambda: rng.random(n) < 0.5,
    }
    return values[kind]()


_names = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=12),
    st.just("ü" * 200),
    st.sampled_from(["a", "b"]),  # small pool: duplicates happen
)


@st.composite
def messy_tables(draw) -> tuple[pd.DataFrame, list[str]]:
    n_rows = draw(st.sampled_from([1, 3, 12, 40, 90]))
    kinds = draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=5))
    names = draw(st.lists(_names, min_size=len(kinds), max_size=len(kinds)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    columns = [pd.Series(_column(kind, n_rows, rng)) for kind in kinds]
    return pd.concat(columns, axis=1, keys=range(len(kinds))), names


@pytest.mark.slow
@settings(
    max_examples=int(os.environ.get("SYNTHGATE_MESSY_EXAMPLES", "12")),
    deadline=None,
    derandomize=True,  # the same examples on every machine, so CI's verdict does not depend on the draw
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(table=messy_tables(), fmt=st.sampled_from(["csv", "parquet"]))
# found by a random draw: every value of a small integer column is rare, so it is replaced by a numpy scalar
@example(table=(pd.DataFrame({0: [850, 635, 509, 267, 305, 38, 72, 13, 172, 812, 648, 912]}), ["0"]), fmt="csv")
def test_random_messy_tables_end_in_a_clean_exit_without_traceback(table, fmt):
    # Arrange
    frame, names = table
    with tempfile.TemporaryDirectory() as folder:
        source, output = Path(folder) / f"messy.{fmt}", Path(folder) / "out.parquet"
        if fmt == "csv":
            frame.set_axis(names, axis=1).to_csv(source, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            arrays = [pa.array(frame[i].astype(str) if i in _mixed(frame) else frame[i]) for i in frame.columns]
            pq.write_table(pa.table(arrays, names=names), source)

        # Act
        code, terminal = run_cli("-i", str(source), "-o", str(output), "--no-cache")

        # Assert
        assert code in CLEAN_EXITS, terminal
        assert "Traceback" not in terminal
        if code == EXIT_OK:
            assert_published_whole(source, output)


def _mixed(frame: pd.DataFrame) -> set:
    """Object columns Parquet cannot hold as they are (it stores one type per column)."""
    return {c for c in frame.columns if frame[c].dtype == object and frame[c].map(type).nunique() > 1}
