"""The synthetic copy keeps the table whole: every column in order and dtype, keys in format, no real PII."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from bench.tables import crm_table
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.gmm import GaussianMixture, GMMConfig
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import ColumnKind, TableSchema, infer_schema
from synthgate.tasks.keys import pattern_keys
from synthgate.tasks.protect import complete_output
from synthgate.tasks.sample import sample_rows

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PII = ("name", "email", "phone", "address", "notes")


@pytest.fixture(scope="module")
def crm() -> pd.DataFrame:
    return crm_table(1500, seed=5)


def _synthesize(frame: pd.DataFrame, schema: TableSchema, n: int, seed: int = 0) -> pd.DataFrame:
    """A fitted GMM's rows, completed: the output side of a run without Prefect."""
    modelled = frame[[c.name for c in schema.modelled]]
    encoder = TableEncoder(schema).fit(modelled)
    model = GaussianMixture(GMMConfig(n_components=4), spans=encoder.spans_).fit(encoder.transform(modelled))
    return complete_output(sample_rows(model, encoder, n, seed=seed), schema, seed=seed, real=frame)


def _assert_whole(out: pd.DataFrame, real: pd.DataFrame) -> None:
    assert list(out.columns) == list(real.columns)
    assert out.dtypes.astype(str).tolist() == real.dtypes.astype(str).tolist()


def test_crm_output_is_whole_with_keys_in_format_and_no_real_pii(crm):
    # Arrange
    schema = infer_schema(crm)

    # Act
    out = _synthesize(crm, schema, 2000)

    # Assert
    _assert_whole(out, crm)
    ids = out["customer_id"]
    assert ids.is_unique and not set(ids) & set(crm["customer_id"])
    assert out["account_ref"].map(lambda v: bool(UUID4.match(v))).all()
    assert out["account_ref"].is_unique and not set(out["account_ref"]) & set(crm["account_ref"])
    codes = out["referral_code"].dropna()
    assert codes.str.fullmatch(r"REF-\d{4}").all() and codes.is_unique
    assert not set(codes) & set(crm["referral_code"].dropna())
    # Null shares follow the source: 2000 draws at p ~ 0.85 have a standard deviation under 0.01.
    assert abs(out["referral_code"].isna().mean() - crm["referral_code"].isna().mean()) < 0.05
    assert abs(out["notes"].isna().mean() - crm["notes"].isna().mean()) < 0.05
    for col in PII:
        assert not set(out[col].dropna()) & set(crm[col].dropna()), col
    assert out["email"].str.contains("@").all()
    lengths = out["notes"].dropna().str.len()
    assert abs(lengths.median() - crm["notes"].dropna().str.len().median()) < 15  # similar length distribution
    assert set(out["country"]) == {"US"}
    assert out["signup_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert out["last_login"].str.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}").all()
    money = out["annual_income"].to_numpy()
    assert np.allclose(money, np.round(money, 2), rtol=0, atol=1e-6)


def test_penguins_output_has_every_column_in_order_and_dtype(penguins):
    # Act
    out = _synthesize(penguins, infer_schema(penguins), 500)

    # Assert
    _assert_whole(out, penguins)


def test_empty_and_constant_columns_are_kept(penguins):
    # Arrange
    frame = penguins.assign(
        blank_float=np.nan, blank_text=pd.Series([None] * len(penguins), dtype="str"), region="Antarctica"
    )

    # Act
    out = _synthesize(frame, infer_schema(frame), 300)

    # Assert
    _assert_whole(out, frame)
    assert out["blank_float"].isna().all() and out["blank_text"].isna().all()
    assert set(out["region"]) == {"Antarctica"}


def test_drop_removes_the_column_and_keeps_the_rest_in_order(crm):
    # Arrange
    schema = infer_schema(crm).with_overrides({"columns": [{"name": "email", "pii_action": "drop"}]})
    synthetic = crm[[c.name for c in schema.modelled]].head(50)

    # Act
    out = complete_output(synthetic, schema, seed=0, real=crm)

    # Assert
    assert list(out.columns) == [c for c in crm.columns if c != "email"]


def test_keys_of_a_streamed_output_are_unique_across_batches(crm):
    # Arrange
    schema = infer_schema(crm)
    synthetic = crm[[c.name for c in schema.modelled]].sample(900, replace=True, random_state=0)

    # Act: three batches, each told where it starts and how long the whole output is
    parts = [
        complete_output(synthetic.iloc[i : i + 300], schema, seed=4, real=crm, offset=i, total=900)
        for i in range(0, 900, 300)
    ]
    whole = complete_output(synthetic, schema, seed=4, real=crm)

    # Assert
    joined = pd.concat(parts, ignore_index=True)
    for col in ("customer_id", "account_ref", "referral_code"):
        assert joined[col].dropna().is_unique, col
        pd.testing.assert_series_equal(joined[col], whole[col])


def test_a_pattern_too_small_for_the_output_gains_digits_not_duplicates():
    # Arrange: REF-## holds 100 codes, 10 of them real
    real = [f"REF-{i:02d}" for i in (3, 17, 25, 38, 41, 56, 62, 79, 84, 90)]
    col = infer_schema(pd.DataFrame({"ref_code": real})).column("ref_code")

    # Act
    codes = pattern_keys(col, np.arange(300), seed=0, real=set(real), total=300)

    # Assert
    assert col.format == "REF-##"
    assert len(set(codes)) == 300 and not set(codes) & set(real)
    assert all(re.fullmatch(r"REF-\d{3,}", c) for c in codes)


@pytest.mark.slow
def test_crm_table_publishes_whole_with_default_options(prefect_harness, tmp_path):
    # Arrange: the whole CRM export as Parquet, accented names included (the same table as a spreadsheet's cp1252
    # `;` CSV reads to the same frame: tests/test_messy_tables.py runs that export through the CLI)
    from synthgate.flows.synthesize import synthesize_table

    real = crm_table(2000, seed=0)
    real.loc[real.index[:25], "name"] = [f"José Müller {i}" for i in range(25)]
    source = tmp_path / "crm.parquet"
    real.to_parquet(source)
    request = RunRequest(input=str(source), output=tmp_path / "out.parquet", model="gmm")

    # Act
    result = synthesize_table(request, use_cache=False)
    out = pd.read_parquet(result.output)

    # Assert: published, whole, keys in format and new, no real PII, every rule between columns held
    assert result.published
    _assert_whole(out, real)
    assert not set(out["customer_id"]) & set(real["customer_id"])
    assert out["account_ref"].map(lambda v: bool(UUID4.match(v))).all()
    assert out["referral_code"].dropna().str.fullmatch(r"REF-\d{4}").all()
    assert not set(out["referral_code"].dropna()) & set(real["referral_code"].dropna())
    cells = {str(v) for col in PII for v in out[col].dropna()}
    assert not cells & {str(v) for col in PII for v in real[col].dropna()}
    assert set(out["country"]) == {"US"}
    assert (pd.to_datetime(out["last_login"]) >= pd.to_datetime(out["signup_date"])).all()
    city_state = real.groupby("city")["state"].first()
    assert (out["state"] == out["city"].map(city_state)).all()
    kinds = {c["name"]: c["kind"] for c in result.metadata.schema_["columns"]}
    assert kinds["annual_income"] == ColumnKind.CONTINUOUS and kinds["signup_date"] == ColumnKind.DATETIME
