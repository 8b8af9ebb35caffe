"""`synthgate score` on a published breast_cancer model: the threshold holds its false-positive rate on unseen rows,
a one-segment or shifted batch is drift, a bad batch is refused with every reason, and the files are complete."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from synthgate.flows.score import ScoreRequest, run_score
from synthgate.schemas.errors import InvalidInputError, ValidationFailedError
from synthgate.schemas.gates import GateResult, MetricResult
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.tasks.cache import model_key, save_cached
from synthgate.tasks.drift import calibrate
from synthgate.tasks.ingest import data_hash, read_table
from synthgate.tasks.publish import write_parquet
from synthgate.tasks.score import read_score_summary
from synthgate.tasks.split import split_holdout

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FPR = 0.05
N_SOURCE = 400  # breast_cancer rows the run saw; the other 169 are unseen, unshifted rows to score


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A gmm run on 400 breast_cancer rows, published as `synthgate run` does (model stored under its key), and the
    169 rows it never saw."""
    from synthgate.models.encoders.table import TableEncoder
    from synthgate.models.gmm import GaussianMixture
    from synthgate.schemas.table import infer_schema
    from synthgate.tasks.reader import load_dataset

    folder = tmp_path_factory.mktemp("score")
    frame = load_dataset("breast_cancer").sample(frac=1.0, random_state=0).reset_index(drop=True)
    source, unseen = folder / "source.csv", frame.iloc[N_SOURCE:].reset_index(drop=True)
    frame.iloc[:N_SOURCE].to_csv(source, index=False)
    rows = read_table(str(source))
    request = RunRequest(input=str(source), output=folder / "out.parquet", model="gmm", seed=3)
    train, holdout = split_holdout(rows, fraction=request.holdout_fraction, seed=request.seed)
    schema = infer_schema(rows, name="source")
    encoder = TableEncoder(schema).fit(train)
    model = GaussianMixture(spans=encoder.spans_).fit(encoder.transform(train))
    key = model_key(data_hash(rows), schema, request)
    save_cached(folder / "cache", key, model=model, encoder=encoder, name="gmm", fit_seconds=0.0)
    gates = GateResult(metrics=[MetricResult.judge("column_shapes", "fidelity", 0.9, 0.85, "min")])
    meta = OutputMetadata(
        synthgate_version="test", run_id="r1", created_at=datetime.now(UTC), source=str(source), model="gmm",
        seed=request.seed, n_rows_input=len(rows), n_rows_train=len(train), n_rows_holdout=len(holdout),
        n_rows_output=len(train), data_hash=data_hash(rows), schema=schema.model_dump(mode="json"),
        request=request.model_dump(mode="json"), gates=gates, model_cache="miss", model_key=key,
    )  # fmt: skip
    write_parquet(train, folder / "out.parquet", meta)
    unseen.to_csv(folder / "unseen.csv", index=False)
    return folder, unseen, len(holdout)


def _score(folder, batch: pd.DataFrame | str, name: str, **options) -> object:
    path = batch if isinstance(batch, str) else str(folder / f"{name}.csv")
    if not isinstance(batch, str):
        batch.to_csv(path, index=False)
    request = ScoreRequest(
        model=str(folder / "out.parquet"), input=path, output=folder / f"{name}.scores.parquet", fpr=FPR,
        cache_dir=folder / "cache", **options,
    )  # fmt: skip
    return run_score(request)


def test_conformal_threshold_guarantees_its_rate_and_says_when_the_holdout_is_too_small():
    # Arrange
    scores = np.arange(1.0, 100.0)  # 99 holdout scores

    # Act
    enough, too_few = calibrate(scores, 0.05), calibrate(scores[:9], 0.05)

    # Assert
    assert enough.rank == 95 and enough.value == 95.0 and enough.fpr_bound == pytest.approx(5 / 100)
    assert too_few.value == 9.0 and too_few.fpr_bound == pytest.approx(1 / 10)  # 1 / (m + 1) > fpr: said, not hidden


def test_an_unshifted_batch_is_flagged_at_its_false_positive_rate_and_is_not_drift(published):
    # Arrange
    folder, unseen, n_holdout = published

    # Act
    result = _score(folder, unseen, "unshifted")

    # Assert
    s = result.summary
    assert s.threshold.n_holdout == n_holdout and "holdout" in s.holdout_source
    # Unseen rows and holdout rows are exchangeable, so the count above the holdout's rank-k score is beta-binomial
    # (n, m + 1 - k, k) over the draw of both (split conformal); 0.999 of its mass lies at or below this count.
    m, k = s.threshold.n_holdout, s.threshold.rank
    limit = stats.betabinom(len(unseen), m + 1 - k, k).ppf(0.999)
    assert s.n_anomalies <= limit
    assert not s.drifted and s.moved_columns == []


def test_a_one_segment_batch_and_a_moved_mean_are_drift(published):
    # Arrange
    folder, unseen, _ = published
    segment = unseen[unseen["target"] == "malignant"]
    moved = unseen.assign(**{"mean radius": unseen["mean radius"] * 1.3})

    # Act
    one_segment, shifted = _score(folder, segment, "segment"), _score(folder, moved, "moved", report=folder / "r.html")

    # Assert
    assert one_segment.drifted and "target" in one_segment.summary.moved_columns
    assert shifted.drifted and shifted.summary.columns[0].column == "mean radius"
    assert shifted.summary.score_drift.auc > 0.5  # the moved rows are less plausible than the holdout's
    html = (folder / "r.html").read_text()
    assert "DRIFT" in html and "mean radius" in html and html.count("data:image/png") >= 2


def test_scores_file_holds_the_rows_flags_and_top_columns(published):
    # Arrange
    folder, unseen, _ = published
    planted = unseen.head(40).copy()
    planted.loc[:9, "worst area"] = planted.loc[:9, "worst area"] * 20

    # Act
    result = _score(folder, planted, "planted")

    # Assert
    out = pd.read_parquet(result.output)
    assert list(out.columns) == [*planted.columns, "anomaly_score", "is_anomaly", "top_columns"]
    assert out["is_anomaly"].head(10).all() and (out["anomaly_score"].head(10) > out["anomaly_score"][10:].max()).all()
    assert all(len(top) == 3 and set(top) <= set(planted.columns) for top in out["top_columns"])
    assert (out["top_columns"].head(10).map(lambda top: top[0]) == "worst area").all()
    assert read_score_summary(result.output).n_anomalies == int(out["is_anomaly"].sum())
    assert not list(folder.glob(".planted.scores.parquet.*"))  # written through a temporary file, none left


def test_a_bad_batch_is_refused_with_every_reason(published):
    # Arrange
    folder, unseen, _ = published
    bad = unseen.head(20).drop(columns=["mean texture"]).assign(extra=1)
    bad.loc[2, "target"] = "unknown"

    # Act
    with pytest.raises(ValidationFailedError) as caught:
        _score(folder, bad, "bad")

    # Assert
    text = str(caught.value)
    assert "nothing was scored" in text and "'extra'" in text and "'mean texture'" in text


def test_a_changed_source_asks_for_a_reference_and_a_reference_works(published, tmp_path):
    # Arrange
    folder, unseen, _ = published
    changed = tmp_path / "out"
    changed.mkdir()
    meta = pq.read_metadata(folder / "out.parquet")
    from synthgate.tasks.publish import read_metadata

    stale = read_metadata(folder / "out.parquet").model_copy(update={"data_hash": "0" * 64})
    write_parquet(pd.read_parquet(folder / "out.parquet"), changed / "out.parquet", stale)
    request = ScoreRequest(
        model=str(changed / "out.parquet"), input=str(folder / "unseen.csv"), output=tmp_path / "s.parquet",
        cache_dir=folder / "cache", fpr=FPR,
    )  # fmt: skip

    # Act
    with pytest.raises(InvalidInputError, match="--reference"):
        run_score(request)
    half = tmp_path / "reference.csv"
    unseen.iloc[:80].to_csv(half, index=False)
    result = run_score(ScoreRequest(**{**request.__dict__, "reference": str(half)}))

    # Assert
    assert meta.num_rows > 0 and result.summary.threshold.n_holdout == 80
    assert result.summary.holdout_source == str(half)


def test_the_command_exits_4_on_drift_and_2_on_a_bad_batch(published):
    # Arrange
    from synthgate.flows.cli import app

    folder, unseen, _ = published
    unseen[unseen["target"] == "benign"].to_csv(folder / "benign.csv", index=False)
    unseen.drop(columns=["target"]).to_csv(folder / "no-target.csv", index=False)
    common = ["score", "--model", str(folder / "out.parquet"), "--cache-dir", str(folder / "cache")]

    # Act
    drift = CliRunner().invoke(app, [*common, "-i", str(folder / "benign.csv"), "-o", str(folder / "b.parquet")])
    bad = CliRunner().invoke(app, [*common, "-i", str(folder / "no-target.csv"), "-o", str(folder / "n.parquet")])

    # Assert
    assert drift.exit_code == 4, drift.output
    assert bad.exit_code == 2 and not (folder / "n.parquet").exists()


def test_the_newest_batch_is_the_last_modified_table_file(tmp_path):
    # Arrange
    import os

    from synthgate.flows.watch import newest_batch

    for i, name in enumerate(["b.csv", "a.parquet", "notes.md"]):
        (tmp_path / name).write_text("x\n1\n")
        os.utime(tmp_path / name, (1_000 + i, 1_000 + i))

    # Act
    newest, by_glob = newest_batch(str(tmp_path)), newest_batch(str(tmp_path / "*.csv"))

    # Assert
    assert newest.endswith("a.parquet") and by_glob.endswith("b.csv")
    with pytest.raises(InvalidInputError, match="no CSV or Parquet batch"):
        newest_batch(str(tmp_path / "*.tsv"))


def test_watching_regenerates_only_when_the_newest_batch_drifted(published, tmp_path):
    # Arrange
    from synthgate.flows.watch import watch_once

    folder, unseen, _ = published
    batches = tmp_path / "batches"
    batches.mkdir()
    unseen.to_csv(batches / "monday.csv", index=False)
    asked: list[dict] = []
    watch = dict(output_dir=tmp_path / "watch", fpr=FPR, cache_dir=str(folder / "cache"), trigger=asked.append)

    # Act
    steady = watch_once(str(folder / "out.parquet"), str(batches), **watch)
    unseen[unseen["target"] == "malignant"].to_csv(batches / "tuesday.csv", index=False)
    moved = watch_once(str(folder / "out.parquet"), str(batches), **watch)

    # Assert
    assert not steady["drifted"] and moved["drifted"] and moved["batch"].endswith("tuesday.csv")
    assert (tmp_path / "watch" / "tuesday.scores.parquet").exists() and (
        tmp_path / "watch" / "tuesday.drift.html"
    ).exists()
    assert asked == [
        {
            "input": moved["batch"],
            "output": str(tmp_path / "watch" / "tuesday-synthetic.parquet"),
            "model": "gmm",
            "seed": 3,
        }
    ]


@pytest.mark.slow
def test_the_watch_table_flow_scores_publishes_and_queues_a_regeneration(
    published, tmp_path, prefect_harness, monkeypatch
):
    # Arrange
    from prefect.artifacts import Artifact

    from synthgate.flows import watch

    folder, unseen, _ = published
    unseen[unseen["target"] == "benign"].to_csv(tmp_path / "benign.csv", index=False)
    queued: list[dict] = []
    monkeypatch.setattr(watch, "_run_on_demand", queued.append)  # no on-demand deployment on the test server

    # Act
    summary = watch.watch_table(
        model=str(folder / "out.parquet"), batches=str(tmp_path / "*.csv"), output_dir=str(tmp_path / "watch"),
        fpr=FPR, cache_dir=str(folder / "cache"),
    )  # fmt: skip

    # Assert
    assert summary["drifted"] and queued and queued[0]["input"] == str(tmp_path / "benign.csv")
    assert pd.read_parquet(summary["scores"])["is_anomaly"].dtype == bool
    assert "DRIFT" in Artifact.get("watch-table").data


def test_a_row_that_breaks_a_rule_between_columns_is_impossible_and_names_the_rule(published):
    # Arrange
    folder, unseen, _ = published
    rows = unseen.head(10).copy()
    rows.loc[0, "worst radius"] = rows.loc[0, "mean radius"] - 1.0  # breast_cancer holds worst X >= mean X

    # Act
    result = _score(folder, rows, "rule")

    # Assert
    out = pd.read_parquet(result.output)
    assert np.isinf(out.loc[0, "anomaly_score"]) and out.loc[0, "is_anomaly"]
    assert {"worst radius", "mean radius"} <= set(out.loc[0, "top_columns"])
    assert np.isfinite(out.loc[1:, "anomaly_score"]).all()


def test_an_unseen_fixed_combination_breaks_its_rule_and_leads_the_top_columns():
    # Arrange
    from bench.tables import crm_table
    from synthgate.models.encoders.table import TableEncoder
    from synthgate.schemas.table import infer_schema
    from synthgate.tasks.score import Scored, rule_breaks

    frame = crm_table(800, seed=0)
    encoder = TableEncoder(infer_schema(frame)).fit(frame)
    rows = frame.head(6).copy()
    rows.loc[0, "state"] = next(s for s in frame["state"].unique() if s != rows.loc[0, "state"])

    # Act
    broken, rules = rule_breaks(rows, encoder)

    # Assert
    assert broken.tolist() == [True, False, False, False, False, False]
    assert {"city", "state"} == set(rules[0][0][1])
    parts = pd.DataFrame({"city": [9.0] * 6, "state": [0.0] * 6, "income": [1.0, 5.0, 0.0, 0.0, 0.0, 0.0]})
    tops = Scored(np.zeros(6), parts, rules).top_columns(2, typical=parts.median())
    assert set(tops[0]) == {"city", "state"} and tops[1][0] == "income"  # not city, whose part is always large


def test_a_run_that_skipped_the_store_is_scored_from_the_model_kept_beside_its_output(published, tmp_path):
    # Arrange: the same published run as if made with --no-cache (nothing in the store) and an empty store
    from synthgate.tasks.cache import load_cached, model_beside, save_beside
    from synthgate.tasks.publish import read_metadata
    from synthgate.tasks.score import find_model

    folder, _, _ = published
    meta = read_metadata(folder / "out.parquet")
    output = tmp_path / "nocache.parquet"
    write_parquet(pd.read_parquet(folder / "out.parquet"), output, meta.model_copy(update={"model_cache": "off"}))
    fitted = load_cached(folder / "cache", meta.model_key, device="cpu")
    keep = {"model": fitted.model, "encoder": fitted.encoder, "name": fitted.name, "fit_seconds": 0.0}

    # Act / Assert: no model anywhere is a clear refusal naming where it looked
    with pytest.raises(InvalidInputError, match=r"nocache\.model"):
        find_model(output, cache_dir=tmp_path / "empty-store")

    # Act: a model of another run left at the path first, then this run's, written over it
    save_beside(output, "another-run", **keep)
    with pytest.raises(InvalidInputError, match="neither in the model store"):
        find_model(output, cache_dir=tmp_path / "empty-store")
    save_beside(output, meta.model_key, **keep)
    found = find_model(output, cache_dir=tmp_path / "empty-store")

    # Assert: the kept model scores exactly as the stored one, and no staging directory is left behind
    x = found.encoder.transform(pd.read_parquet(output).head(50))
    torch.testing.assert_close(found.model.anomaly_scores(x).score, fitted.model.anomaly_scores(x).score)
    assert found.key == meta.model_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nocache.model", "nocache.parquet"]
    assert model_beside(output) == tmp_path / "nocache.model"


def test_column_drift_from_label_counts_matches_the_per_row_shapes_and_tests(penguins):
    # Arrange: one island's rows against the others', with a value written two ways (1 and "1" are one label)
    from synthgate.schemas.table import infer_schema
    from synthgate.tasks.distance import category_labels
    from synthgate.tasks.drift import column_drift
    from synthgate.tasks.fidelity import column_shapes

    schema = infer_schema(penguins)
    batch, reference = penguins[penguins["island"] == "Biscoe"], penguins[penguins["island"] != "Biscoe"]
    batch = batch.assign(year=batch["year"].astype(object).where(batch.index % 2 == 0, batch["year"].astype(str)))

    # Act
    drift = {c.column: c for c in column_drift(batch, reference, schema, alpha=0.01)}

    # Assert
    shapes = column_shapes(reference, batch, schema).parts
    for col in schema.modelled:
        assert drift[col.name].shape == pytest.approx(shapes[col.name], abs=1e-12)
        if drift[col.name].test == "chi2":
            b, r = pd.Series(category_labels(batch[col.name])), pd.Series(category_labels(reference[col.name]))
            table = pd.concat([b.value_counts(), r.value_counts()], axis=1).fillna(0).to_numpy()
            assert drift[col.name].p_value == pytest.approx(stats.chi2_contingency(table).pvalue, rel=1e-9)
    assert drift["island"].moved and drift["species"].moved
