"""`--model auto`: fit every candidate family, score each on a validation split of the training rows, keep the best.

Each candidate is one mapped Prefect task (tagged `gpu`, like training), so candidates run in parallel and each
shows up in the run with its own time and state. A candidate is fitted on the training rows minus a validation split
carved from them (the gate's holdout is never looked at, so the gate's verdict stays an unbiased test) and scored on
that split: realism first (detection AUC, the gate real tables fail; an independent-marginals sampler can top shapes
and pairs), then the mean of column shapes and pair trends, then ML utility when a target is given. A candidate whose
rows copy training rows (exact-match ratio or DCR share excess over the default privacy gates) is excluded, whatever
its realism. Every candidate shares one time budget: a fit still running past it is stopped, and one whose own
estimate says it cannot finish in time is pruned early.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import GenerativeModel
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import auto_candidate_names, config_class, normalization_for
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import GateThresholds
from synthgate.schemas.metadata import CandidateScore
from synthgate.schemas.table import TableSchema
from synthgate.tasks import privacy
from synthgate.tasks.fidelity import column_shapes, detection_auc, ml_utility, pair_trends
from synthgate.tasks.preprocess import encode_training
from synthgate.tasks.sample import sample_rows
from synthgate.tasks.split import split_holdout
from synthgate.tasks.train import fit_model

logger = logging.getLogger(__name__)

# Rows drawn to score a candidate: stable scores, cheap next to training (docs/decisions.md#auto-score).
SCORE_ROWS = 5_000
VALIDATION_FRACTION = 0.2  # of the training rows, carved off for scoring candidates
# Detection AUCs closer than this are a tie, decided by shapes and pairs: on a few hundred validation rows the AUC
# itself moves by about this much between seeds.
AUC_TIE = 0.02  # docs/decisions.md#auto-realism-first
PRIVACY_QUERIES = 500  # validation rows queried in the candidates' distance check
# The families in the order a budgeted run tries them one after another: the quick ones always get their turn, the
# neural ones only while time is left; cart fits in about a second where gmm's BIC search can take a minute
# (docs/decisions.md#database-default-model).
CHEAP_FIRST = ("cart", "gmm", "arn", "vae", "autoencoder", "gan")


class OverBudgetError(RuntimeError):
    """A candidate's fit ran, or would run, past `--time-budget`."""


def default_time_budget(n_rows: int, n_columns: int) -> float:
    """Seconds all candidates share by default: a minute plus 0.2 ms per training cell (8k x 54 cells: 146 s)."""
    return 60.0 + n_rows * max(n_columns, 1) / 5_000


def budget_watch(deadline: float) -> Any:
    """A progress callback that stops a fit past `deadline` (perf_counter seconds) or once its ETA overshoots it."""

    def watch(event: Any) -> None:
        now = time.perf_counter()
        eta = event.get("eta_s") if isinstance(event, dict) else getattr(event, "eta_s", None)
        if now > deadline:
            raise OverBudgetError("stopped: past the time budget")
        if eta is not None and now + eta > deadline + 0.5 * max(deadline - now, 0) + 5:
            raise OverBudgetError(f"pruned: its own estimate ({eta:.0f} s more) overshoots the time budget")

    return watch


# `auto` in a database: each table's candidates share a few seconds plus a share per training cell, and the whole
# database a cap, so a database of many tables costs a bounded multiple of its gmm run
# (docs/decisions.md#database-default-model).
TABLE_BUDGET_BASE_S = 5.0
TABLE_BUDGET_CELLS_PER_S = 2_000
DATABASE_BUDGET_MAX_S = 300.0


def table_time_budget(n_rows: int, n_columns: int) -> float:
    """Seconds one database table's `auto` candidates share: a few seconds plus a share per training cell."""
    return TABLE_BUDGET_BASE_S + n_rows * max(n_columns, 1) / TABLE_BUDGET_CELLS_PER_S


def database_time_budget(shapes: list[tuple[int, int]]) -> float:
    """Seconds a whole database's `auto` fits share: every table's budget, at most `DATABASE_BUDGET_MAX_S`."""
    return min(sum(table_time_budget(*shape) for shape in shapes), DATABASE_BUDGET_MAX_S)


@dataclass
class SharedBudget:
    """Seconds that several `auto` selections share, one after another (a database's tables)."""

    total: float
    spent: float = 0.0

    def take(self, wanted: float) -> float:
        """The seconds granted to the next selection: what it wants, at most what is left."""
        return max(min(wanted, self.total - self.spent), 0.0)

    def spend(self, seconds: float) -> None:
        self.spent += seconds


def describe_candidates(scores: list[CandidateScore]) -> str:
    """One line per selection for the log: each family's detection AUC, or why it has none, and its fit seconds."""
    parts = []
    for c in scores:
        what = c.error or c.excluded or f"AUC {c.detection_auc}"
        parts.append(f"{c.model} ({what}, {c.fit_seconds:.1f} s)")
    return "; ".join(parts)


@dataclass
class Candidate:
    """One tried model: the fitted model and encoder (None on failure), its holdout score and its cost."""

    name: str
    model: GenerativeModel | None
    encoder: TableEncoder | None
    score: float | None  # mean of shapes and pairs on the validation split
    fit_seconds: float
    device: str = "cpu"
    error: str | None = None
    detection: float | None = None  # detection AUC on the validation split (0.5 = indistinguishable)
    utility: float | None = None
    excluded: str | None = None  # why a privacy check excluded it
    measures: dict[str, float] = field(default_factory=dict)

    def rank_key(self) -> tuple[float, float, float, float]:
        """Realism first (detection AUC in AUC_TIE steps), then shapes and pairs, then utility, then speed."""
        auc = self.detection if self.detection is not None else 1.0
        return (-round(auc / AUC_TIE), self.score or 0.0, self.utility or 0.0, -self.fit_seconds)

    def as_score(self) -> CandidateScore:
        return CandidateScore(
            model=self.name,
            score=self.score,
            fit_seconds=round(self.fit_seconds, 3),
            error=self.error,
            detection_auc=None if self.detection is None else round(self.detection, 4),
            excluded=self.excluded,
        )


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of shared options a family understands (`epochs` means nothing to the GMM)."""
    known = {f.name for f in fields(config_class(name))}
    return {k: v for k, v in options.items() if k in known}


def evaluate_candidate(
    name: str,
    train: pd.DataFrame,
    holdout: pd.DataFrame | None,
    schema: TableSchema,
    *,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    seed: int = 0,
    target: str | None = None,
    deadline: float | None = None,
) -> Candidate:
    """Fit `name` on most of `train`, score it on a validation split of `train`; failures become unscored candidates.

    Args:
        holdout: unused, kept for callers of the earlier signature: the gate's holdout is never scored on.
        target: a column to weigh ML utility on (third in the ranking).
        deadline: `time.perf_counter()` value past which the fit is stopped (see `budget_watch`).
    """
    del holdout  # the gate's holdout must stay unseen by the selection
    start = time.perf_counter()
    try:
        fit_rows, val = split_holdout(train, fraction=VALIDATION_FRACTION, seed=seed)
        encoder, encoded = encode_training(fit_rows, schema, normalization=normalization_for(name))
        fitted = fit_model(
            encoded,
            model=name,
            spans=encoder.spans_,
            device=device,
            options=options_for(name, options or {}),
            seed=seed,
            progress=None if deadline is None else budget_watch(deadline),
        )
        synthetic = sample_rows(fitted.model, encoder, min(SCORE_ROWS, max(len(fit_rows), len(val))), seed=seed)
        return _scored(name, fitted, encoder, fit_rows, val, synthetic, schema, target, seed)
    except Exception as exc:  # one failing family must not sink the others
        logger.warning("auto: %s failed: %s", name, exc)
        return Candidate(name, None, None, None, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def _scored(name, fitted, encoder, fit_rows, val, synthetic, schema, target, seed) -> Candidate:
    """Realism, fidelity, utility and the privacy exclusion of one fitted candidate on the validation split."""
    detection = detection_auc(val, synthetic, schema, seed=seed).value
    parts = [column_shapes(val, synthetic, schema).value, pair_trends(val, synthetic, schema).value]
    known = [p for p in parts if p is not None]
    score = sum(known) / len(known) if known else None
    utility = ml_utility(fit_rows, val, synthetic, schema, target, seed=seed).value if target else None
    limits = GateThresholds()
    exact = privacy.exact_match_ratio(fit_rows, val, synthetic, schema).value
    dist = privacy.privacy_distances(fit_rows, val, synthetic, schema, seed=seed, max_queries=PRIVACY_QUERIES)
    dcr = privacy.dcr_share_excess(dist).value
    excluded = None
    if exact is not None and limits.exact_match_ratio_max is not None and exact > limits.exact_match_ratio_max:
        excluded = f"excluded: exact-match ratio {exact:.2f} > {limits.exact_match_ratio_max}"
    elif dcr is not None and limits.dcr_share_excess_max is not None and dcr > limits.dcr_share_excess_max:
        excluded = f"excluded: DCR share excess {dcr:.3f} > {limits.dcr_share_excess_max}"
    logger.info(
        "auto: %s detection %s, fidelity %s in %.1f s%s",
        name,
        _f(detection),
        _f(score),
        fitted.seconds,
        f" ({excluded})" if excluded else "",
    )
    measures = {k: v for k, v in {"exact_match_ratio": exact, "dcr_share_excess": dcr}.items() if v is not None}
    return Candidate(
        name, fitted.model, encoder, score, fitted.seconds, fitted.device, None, detection, utility, excluded, measures
    )


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def pick_best(candidates: list[Candidate]) -> Candidate:
    """The most realistic candidate that passed the privacy check (see `Candidate.rank_key`).

    When every fitted candidate was excluded for copying, the least realistic-looking copy is not better than none:
    the most realistic one is still returned, and the privacy gate refuses it with the measured reason.
    """
    scored = [c for c in candidates if c.score is not None]
    if not scored:
        errors = "; ".join(f"{c.name}: {c.error}" for c in candidates)
        raise InvalidInputError(f"--model auto: no candidate could be fitted ({errors})")
    private = [c for c in scored if c.excluded is None] or scored
    return max(private, key=Candidate.rank_key)


def cheap_first(names: list[str]) -> list[str]:
    """`names` in `CHEAP_FIRST` order; a family it does not rank goes last."""
    return sorted(names, key=lambda n: CHEAP_FIRST.index(n) if n in CHEAP_FIRST else len(CHEAP_FIRST))


def evaluate_in_series(
    names: list[str],
    train: pd.DataFrame,
    schema: TableSchema,
    *,
    budget: float,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    seed: int = 0,
    target: str | None = None,
) -> list[Candidate]:
    """Candidates one after another within `budget` seconds, for a caller with no workers to spread them over.

    The first always runs to the end, so there is a model to keep however small the budget; a later one starts only
    while budget is left and is stopped or pruned past it (`budget_watch`), and one never started is recorded as
    skipped. Give the names cheapest first (`cheap_first`).
    """
    deadline = time.perf_counter() + budget
    outcomes = []
    for i, name in enumerate(names):
        if i and time.perf_counter() >= deadline:
            outcomes.append(Candidate(name, None, None, None, 0.0, error="skipped: the time budget was spent"))
            continue
        outcomes.append(
            evaluate_candidate(name, train, None, schema, device=device, options=options, seed=seed, target=target,
                               deadline=deadline if i else None)
        )  # fmt: skip
    return outcomes


def candidate_names() -> list[str]:
    """The table families `auto` tries: the registry's (image models, private variants and `NOT_IN_AUTO` are not
    candidates)."""
    return auto_candidate_names()


evaluate_candidate_task = task(name="auto-candidate", cache_policy=NO_CACHE)(evaluate_candidate)
