"""The flow's named steps, tested as plain functions: request checks, source reading, training, output, publish."""

from __future__ import annotations

import sqlite3

import pandas as pd
import pytest

from synthgate.schemas.errors import GateRefusedError, InvalidInputError, ValidationFailedError
from synthgate.schemas.gates import GateResult, GateThresholds
from synthgate.schemas.request import RunRequest
from synthgate.tasks.cache import model_key
from synthgate.tasks.deliver import publish_outputs, refusal
from synthgate.tasks.dp_preprocess import prepare_training
from synthgate.tasks.output import draw_synthetic
from synthgate.tasks.plan import RunOptions, available_models, check_request, plan_run
from synthgate.tasks.publish import StagedParquet, read_metadata
from synthgate.tasks.record import VERSION, build_metadata, streaming_notes
from synthgate.tasks.source import ingest_source, table_name, validate_source
from synthgate.tasks.split import split_holdout
from synthgate.tasks.steps import PLAIN, Steps
from synthgate.tasks.training import encode_for_model, train_or_reuse
from synthgate.tasks.verdict import judge_output


def _request(tmp_path, **fields) -> RunRequest:
    return RunRequest(input=fields.pop("input", "dataset:penguins"), output=tmp_path / "out.parquet", **fields)


# ------------------------------------------------------------------------------------------------------ plan
def test_auto_with_a_budget_is_planned_as_one_private_family(tmp_path):
    # Arrange: `auto` with a budget trains one family chosen by size (tasks.dp_preprocess), so planning accepts it
    request = _request(tmp_path, model="auto", epsilon=1.0)

    # Act / Assert: no refusal
    plan_run(request, RunOptions())


def test_model_names_come_from_the_registry_and_unknown_ones_are_refused(tmp_path):
    # Arrange: bypass RunRequest's own list to reach the registry check
    request = RunRequest.model_construct(**{**_request(tmp_path).model_dump(), "model": "nope"})

    # Act / Assert
    assert {"gmm", "vae", "gan", "autoencoder", "auto"} <= set(available_models())
    with pytest.raises(InvalidInputError, match="unknown model 'nope'; choose one of"):
        check_request(request, RunOptions())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RunOptions(write_url="sqlite:///x.db"), "needs both --write-url"),
        (RunOptions(write_url="sqlite:///x.db", write_table="a.b.c"), "a.b.c"),
    ],
)
def test_bad_write_back_targets_are_refused_up_front(tmp_path, options, message):
    # Act / Assert
    with pytest.raises(InvalidInputError, match=message):
        check_request(_request(tmp_path), options)


def test_forced_streaming_refuses_balance_and_small_inputs_stream_only_when_asked(tmp_path):
    # Arrange
    balanced = _request(tmp_path, balance="species")

    # Act
    with pytest.raises(InvalidInputError, match="--no-stream"):
        plan_run(balanced, RunOptions(stream=True))
    by_size = plan_run(_request(tmp_path), RunOptions())
    forced = plan_run(_request(tmp_path), RunOptions(stream=True, use_cache=False))

    # Assert
    assert not by_size.stream_input and by_size.use_cache
    assert forced.stream_input and not forced.use_cache
    assert forced.stream_output(_request(tmp_path), 10)  # a streamed input streams its output too
    assert not by_size.stream_output(_request(tmp_path), 2_000_000)
    assert by_size.stream_output(_request(tmp_path), 2_000_001)


def test_auto_keeps_no_cache(tmp_path):
    assert not plan_run(_request(tmp_path, model="auto"), RunOptions()).use_cache


# ------------------------------------------------------------------------------------------------------ steps
def test_plain_steps_call_the_function_and_map_in_order():
    # Arrange
    class FakeTask:
        @staticmethod
        def fn(item, extra, *, scale):
            return (item + extra) * scale

    # Act
    single = PLAIN(FakeTask)(1, 2, scale=3)
    mapped = PLAIN.map(FakeTask, [1, 2, 3], 10, scale=2)

    # Assert
    assert single == 9
    assert mapped == [22, 24, 26]
    assert Steps(orchestrate=True)(FakeTask) is FakeTask


# ------------------------------------------------------------------------------------------------------ source
@pytest.mark.slow
def test_whole_and_streamed_reads_agree_on_schema_hash_and_rows(tmp_path, penguins):
    # Arrange
    csv = tmp_path / "penguins.csv"
    penguins.to_csv(csv, index=False)
    request = _request(tmp_path, input=str(csv))
    whole_plan = plan_run(request, RunOptions(stream=False))
    stream_plan = plan_run(request, RunOptions(stream=True, batch_rows=50))

    # Act
    whole = validate_source(ingest_source(request, whole_plan), request, whole_plan)
    streamed = validate_source(ingest_source(request, stream_plan), request, stream_plan)

    # Assert
    assert table_name(request) == "penguins"
    assert whole.n_rows == streamed.n_rows == len(penguins) == len(whole.frame)
    assert [c.name for c in whole.schema.columns] == [c.name for c in streamed.schema.columns]
    assert len(whole.digest) == 64 and len(streamed.digest) == 64
    assert len(streamed.frame) == len(penguins)  # under max_train_rows: the sample is every row


def test_validation_fails_before_any_training_on_a_broken_contract(tmp_path, penguins):
    # Arrange: the contract forbids missing bill lengths, which penguins has
    from synthgate.schemas.table import infer_schema

    schema = infer_schema(penguins.dropna(), name="penguins")
    schema_path = tmp_path / "schema.yaml"
    schema.to_yaml(schema_path)
    request = _request(tmp_path, schema_path=schema_path)
    plan = plan_run(request, RunOptions())

    # Act / Assert
    with pytest.raises(ValidationFailedError, match="bill_length_mm"):
        validate_source(ingest_source(request, plan), request, plan)


# ------------------------------------------------------------------------------------------------------ train + sample
@pytest.fixture(scope="module")
def prepared_penguins(penguins):
    train, holdout = split_holdout(penguins, fraction=0.2, seed=0)
    from synthgate.schemas.table import infer_schema

    schema = infer_schema(penguins, name="penguins")
    prepared = prepare_training(
        train, schema, model="gmm", epsilon=None, delta=None, rare_k=None, public_schema=False, seed=0
    )
    return prepared, holdout


def test_train_or_reuse_stores_then_reuses_the_same_model(tmp_path, prepared_penguins):
    # Arrange
    prepared, holdout = prepared_penguins
    request = _request(tmp_path, model_options={"max_iter": 20})
    encoded = encode_for_model(prepared, "gmm")
    cache = (tmp_path / "store", "k" * 64)

    # Act
    off = train_or_reuse(encoded, prepared, holdout, request, cache=None)
    miss = train_or_reuse(encoded, prepared, holdout, request, cache=cache)
    hit = train_or_reuse(encoded, prepared, holdout, request, cache=cache)

    # Assert
    assert (off.model_cache, miss.model_cache, hit.model_cache) == ("off", "miss", "hit")
    assert hit.fitted.name == "gmm" and hit.fitted.seconds == 0.0
    a = draw_synthetic(miss, prepared.train, prepared.schema, request, 50, staged=None, n_holdout=len(holdout))
    b = draw_synthetic(hit, prepared.train, prepared.schema, request, 50, staged=None, n_holdout=len(holdout))
    pd.testing.assert_frame_equal(a, b)  # the reused model and encoder draw the same rows under one seed


@pytest.mark.slow
def test_streamed_output_writes_every_row_and_returns_the_gated_sample(tmp_path, prepared_penguins):
    # Arrange
    prepared, holdout = prepared_penguins
    request = _request(tmp_path)
    trained = train_or_reuse(encode_for_model(prepared, "gmm"), prepared, holdout, request, cache=None)
    staged = StagedParquet(request.output)

    # Act
    kept = draw_synthetic(trained, prepared.train, prepared.schema, request, 300, staged=staged, n_holdout=10)
    gates = judge_output(prepared.train, holdout, kept, prepared.schema, request)

    # Assert
    assert staged.n_rows == 300 and len(kept) == 300  # fewer rows than GATE_SAMPLE_ROWS: all kept
    assert list(kept.columns) == list(prepared.train.columns)
    assert gates.metric("column_shapes").value > 0.7
    assert gates.metric("schema_validity").value == 1.0
    staged.discard()
    assert not request.output.exists()


# ------------------------------------------------------------------------------------------------------ record + publish
def test_streaming_notes_name_the_sample_sizes():
    assert streaming_notes(n_sample=10, n_input=10, n_kept=None) == []
    notes = streaming_notes(n_sample=5, n_input=10, n_kept=3)
    assert "uniform sample of 5 of 10" in notes[0] and "first 3 rows" in notes[1]


def test_publish_writes_parquet_and_swaps_in_the_database_table(tmp_path, prepared_penguins):
    # Arrange
    prepared, holdout = prepared_penguins
    request = _request(tmp_path)
    trained = train_or_reuse(encode_for_model(prepared, "gmm"), prepared, holdout, request, cache=None)
    synthetic = draw_synthetic(trained, prepared.train, prepared.schema, request, 40, staged=None, n_holdout=0)
    source = validate_source(
        ingest_source(request, plan := plan_run(request, RunOptions())), request, plan
    )  # the real source, for the metadata's hash
    gates = GateResult(metrics=[])
    metadata = build_metadata(
        request,
        source,
        prepared,
        trained,
        gates,
        n_holdout=len(holdout),
        n_output=len(synthetic),
        n_gated=len(synthetic),
        streamed_output=False,
        timings={"train": 1.0},
        model_key=model_key(source.digest, prepared.schema, request, version=VERSION),
    )
    db = tmp_path / "out.db"

    # Act
    publish_outputs(
        synthetic, request, metadata, staged=None, write_url=f"sqlite:///{db}", write_table="synthetic", step=PLAIN
    )

    # Assert
    assert read_metadata(request.output).n_rows_output == 40
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from synthetic").fetchone()[0] == 40


def test_refusal_discards_staged_rows_and_carries_the_metadata(tmp_path):
    # Arrange
    staged = StagedParquet(tmp_path / "o.parquet")
    staged.write(pd.DataFrame({"a": [1, 2]}))
    gates = GateResult(metrics=[])

    # Act
    error = refusal(gates, tmp_path / "o.html", metadata="meta", staged=staged)  # type: ignore[arg-type]

    # Assert
    assert isinstance(error, GateRefusedError) and error.metadata == "meta"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_thresholds_reach_the_gates(tmp_path, prepared_penguins):
    # Arrange: an impossible shapes threshold
    prepared, holdout = prepared_penguins
    request = _request(tmp_path, thresholds=GateThresholds(column_shapes_min=1.0))
    trained = train_or_reuse(encode_for_model(prepared, "gmm"), prepared, holdout, request, cache=None)
    synthetic = draw_synthetic(trained, prepared.train, prepared.schema, request, 100, staged=None, n_holdout=0)

    # Act
    gates = judge_output(prepared.train, holdout, synthetic, prepared.schema, request)

    # Assert
    assert not gates.passed
    assert any(m.name == "column_shapes" and not m.passed for m in gates.metrics)


def test_a_budget_without_a_model_trains_the_private_default(tmp_path):
    assert _request(tmp_path).model == "gmm"
    assert _request(tmp_path, epsilon=3.0).model == "auto"  # resolved by size: tasks.dp_preprocess
    assert _request(tmp_path, epsilon=3.0, model="vae").model == "vae"
    assert RunRequest.from_sources(input="dataset:penguins", output=tmp_path / "o.parquet", epsilon=1.0).model == "auto"
