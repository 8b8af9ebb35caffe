"""`--model auto`'s choice: realism first, copiers excluded, a shared time budget, scored off the gate's holdout."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from synthgate.schemas.table import infer_schema
from synthgate.tasks import select
from synthgate.tasks.select import Candidate, OverBudgetError, budget_watch, pick_best
from synthgate.tasks.split import split_holdout


def candidate(name: str, detection: float, score: float, excluded: str | None = None) -> Candidate:
    return Candidate(name, None, None, score, 1.0, detection=detection, excluded=excluded)


def test_realism_outranks_shapes_and_copiers_are_excluded():
    # Arrange: "marginals" tops shapes and pairs but is easy to detect; "copier" is the most realistic but copies.
    candidates = [
        candidate("marginals", detection=0.95, score=0.97),
        candidate("realistic", detection=0.62, score=0.90),
        candidate("tied", detection=0.625, score=0.93),
        candidate("copier", detection=0.51, score=0.99, excluded="excluded: exact-match ratio 9.00 > 2.0"),
    ]

    # Act
    best = pick_best(candidates)

    # Assert: AUCs within AUC_TIE tie, and then shapes and pairs decide
    assert best.name == "tied"


def test_budget_watch_stops_past_the_deadline_and_prunes_hopeless_fits():
    # Arrange
    now = time.perf_counter()

    # Act / Assert
    with pytest.raises(OverBudgetError, match="stopped"):
        budget_watch(now - 1)({"epoch": 3})
    with pytest.raises(OverBudgetError, match="pruned"):
        budget_watch(now + 10)(SimpleNamespace(eta_s=1_000.0))
    budget_watch(now + 100)(SimpleNamespace(eta_s=20.0))  # on course: no exception


@pytest.mark.slow
def test_copying_candidate_is_excluded_on_the_validation_split(penguins):
    # Arrange: a "model" whose rows are its own training rows
    schema = infer_schema(penguins)
    train, _ = split_holdout(penguins, fraction=0.2, seed=0)
    fit_rows, val = split_holdout(train, fraction=select.VALIDATION_FRACTION, seed=0)
    fitted = SimpleNamespace(model=None, seconds=0.1, device="cpu")

    # Act
    scored = select._scored("copy", fitted, None, fit_rows, val, fit_rows.copy(), schema, None, 0)

    # Assert
    assert scored.excluded is not None and "exact-match" in scored.excluded
    assert scored.detection is not None


@pytest.mark.slow
def test_candidate_is_scored_on_a_split_of_the_training_rows_only(penguins):
    # Arrange: no holdout at all is handed over; the candidate must still be scored
    schema = infer_schema(penguins)
    train, _ = split_holdout(penguins, fraction=0.2, seed=0)

    # Act
    result = select.evaluate_candidate("gmm", train, None, schema, device="cpu", options={"n_components": 2})

    # Assert
    assert result.error is None
    assert 0.5 <= result.detection <= 1.0 and result.score is not None
    assert result.as_score().detection_auc == round(result.detection, 4)


@pytest.mark.slow
def test_an_over_budget_candidate_is_recorded_not_raised(penguins):
    # Arrange
    schema = infer_schema(penguins)
    train, _ = split_holdout(penguins, fraction=0.2, seed=0)

    # Act
    result = select.evaluate_candidate("arn", train, None, schema, device="cpu", deadline=time.perf_counter() - 1)

    # Assert
    assert result.model is None and "OverBudgetError" in result.error


def test_auto_tries_every_table_family_but_those_kept_out():
    # Arrange
    from synthgate.models.registry import NOT_IN_AUTO, model_names

    # Act
    names = select.candidate_names()

    # Assert: every family offered to `--model` that is not kept out, `cart` included (docs/decisions.md#cart-family).
    assert "cart" in model_names() and "cart" in names
    assert names == [n for n in model_names() if n not in NOT_IN_AUTO]


def test_candidates_in_series_run_cheapest_first_and_stop_starting_once_the_budget_is_spent(monkeypatch):
    # Arrange: each "fit" takes 50 ms and says which deadline it was given
    calls = []

    def fake(name, train, holdout, schema, *, deadline=None, **_):
        calls.append((name, deadline))
        time.sleep(0.05)
        return candidate(name, detection=0.6, score=0.9)

    monkeypatch.setattr(select, "evaluate_candidate", fake)
    names = select.cheap_first(["gan", "vae", "arn", "cart", "gmm", "autoencoder"])

    # Act
    spent = select.evaluate_in_series(names, None, None, budget=0.0)
    roomy = select.evaluate_in_series(names, None, None, budget=60.0)

    # Assert: with nothing to spend the cheapest still runs to the end, unwatched, and the rest are skipped
    assert names[:3] == ["cart", "gmm", "arn"] and calls[0] == ("cart", None)
    assert [c.name for c in spent] == names and all("skipped" in c.error for c in spent[1:])
    assert pick_best(spent).name == "cart"
    assert [c.error for c in roomy] == [None] * len(names) and all(d is not None for _, d in calls[2:])


def test_a_database_shares_its_budget_table_by_table():
    # Arrange: three tables of 1,000 x 10 cells under a cap of 20 s
    budget = select.SharedBudget(20.0)
    wanted = select.table_time_budget(1_000, 10)

    # Act: the first table spends its whole grant, the second overruns it
    first = budget.take(wanted)
    budget.spend(first)
    second = budget.take(wanted)
    budget.spend(second + 3.0)
    third = budget.take(wanted)

    # Assert: each table asks for more when larger, and the last gets nothing (its cheapest family alone)
    assert select.table_time_budget(10_000, 10) > wanted > select.table_time_budget(100, 10)
    assert first == wanted and second == 20.0 - wanted and third == 0.0
    assert select.database_time_budget([(10**7, 50)] * 3) == select.DATABASE_BUDGET_MAX_S
