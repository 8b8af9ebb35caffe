"""The table encoder round-trips values and dtypes exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from synthgate.models.encoders import TableEncoder
from synthgate.schemas.errors import InvalidInputError, NotFittedError
from synthgate.schemas.table import infer_schema


def test_penguins_round_trip_preserves_values_and_dtypes(penguins):
    # Arrange
    schema = infer_schema(penguins)
    encoder = TableEncoder(schema).fit(penguins)

    # Act
    decoded = encoder.inverse_transform(encoder.transform(penguins))

    # Assert
    assert list(decoded.columns) == list(penguins.columns)
    assert decoded.dtypes.to_dict() == penguins.dtypes.to_dict()
    pd.testing.assert_frame_equal(decoded, penguins, check_exact=False, rtol=1e-6)


def test_mixed_dtypes_round_trip():
    # Arrange: every kind the encoder handles, with missing values where the dtype allows them
    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame(
        {
            "amount": rng.normal(100, 15, n).round(2),
            "count": pd.array(rng.integers(0, 500, n), dtype="Int64"),
            "flag": rng.random(n) > 0.5,
            "maybe": pd.array(rng.random(n) > 0.5, dtype="boolean"),
            "level": pd.Categorical(rng.choice(["low", "mid", "high"], n), categories=["low", "mid", "high"]),
            "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s"),
        }
    )
    frame.loc[::7, "count"] = pd.NA
    frame.loc[::5, "maybe"] = pd.NA
    frame.loc[::9, "amount"] = np.nan
    schema = infer_schema(frame)
    encoder = TableEncoder(schema).fit(frame)

    # Act
    decoded = encoder.inverse_transform(encoder.transform(frame))

    # Assert
    assert decoded.dtypes.to_dict() == frame.dtypes.to_dict()
    pd.testing.assert_frame_equal(decoded, frame, check_exact=False, rtol=1e-6)


def test_spans_cover_the_encoded_vector(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    widths = sum(s.width for s in encoder.spans_)
    assert widths == encoder.n_features_
    assert encoder.span_of("species").activation == "softmax" and encoder.span_of("species").width == 3
    assert encoder.span_of("sex").width == 3  # female, male and missing


def test_unknown_category_names_column_and_values(penguins):
    encoder = TableEncoder(infer_schema(penguins)).fit(penguins)
    bad = penguins.copy()
    bad.loc[0, "island"] = "Atlantis"
    with pytest.raises(InvalidInputError, match=r"'island'.*Atlantis"):
        encoder.transform(bad)


def test_transform_before_fit_raises(penguins):
    with pytest.raises(NotFittedError):
        TableEncoder(infer_schema(penguins)).transform(penguins)
