"""The fidelity and privacy gates: every metric, judged against its threshold, in one `GateResult`.

`evaluate_gates` is a plain function (tests call it directly); the Prefect task at the bottom only wraps it. Metric
names are the `GateThresholds` field names without `_min` / `_max`, so a threshold and its metric find each other by
name, in the report, the command line and a request file alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import GateResult, GateThresholds, MetricResult
from synthgate.schemas.table import TableSchema
from synthgate.tasks import fidelity, privacy

logger = logging.getLogger(__name__)

# Rows per side in the detection test and per model in ML utility; past this, more rows barely move the estimates
# (AUC standard error ~0.004 at 10k per side) but the 100k-row bench's fits take twice as long at 20k.
MAX_ROWS = 10_000
# Query rows per set in the nearest-record search (references always stay whole): the DCR share's standard error is
# then ~0.016 and the MIA AUC's ~0.013, while the search over 100k-row references stays near 15 s on 2 cores.
MAX_PRIVACY_QUERIES = 1_000

DESCRIPTIONS = {
    "column_shapes": "mean KS complement (numeric, datetime) / TV complement (categorical) per column; missing share counted",
    "pair_trends": "mean Spearman-correlation similarity (numeric pairs) / contingency similarity (other pairs; numeric columns cut into 3-5 quantile bins)",
    "detection_auc": "gradient-boosting classifier telling holdout rows from synthetic rows, cross-validated AUC (0.5 = indistinguishable)",
    "ml_utility": "train-synthetic-test-holdout / train-real-test-holdout score (macro-F1 or R^2) for the target",
    "coverage": "share of the holdout's categories and numeric range that the synthetic data reaches",
    "schema_validity": "share of synthetic rows passing the input's Great Expectations suite",
    "exact_match_ratio": "share of synthetic rows equal to a training row / share of holdout rows equal to a training row",
    "dcr_share_excess": "share of synthetic rows nearer to train than to holdout, above its no-copy baseline n_train/(n_train+n_holdout), as a fraction of the room above it",
    "dcr_ratio": "median Gower distance synthetic->train / holdout->train (below 1: closer to training rows than fresh data)",
    "nndr_ratio": "median nearest/second-nearest distance ratio to train, synthetic / holdout",
    "mia_auc": "membership inference: AUC of telling training rows from holdout rows by their distance to the closest synthetic row",
}


def _judge(
    name: str, group: str, score: fidelity.Score | float | None, thresholds: GateThresholds, **details
) -> MetricResult:
    """Judge one metric against the threshold field named after it (`<name>_min` or `<name>_max`)."""
    if f"{name}_min" in GateThresholds.model_fields:
        field, direction = f"{name}_min", "min"
    else:
        field, direction = f"{name}_max", "max"
    value = score.value if isinstance(score, fidelity.Score) else score
    if isinstance(score, fidelity.Score):
        details = {**({"parts": _rounded(score.parts)} if score.parts else {}), **_rounded(score.info), **details}
    return MetricResult.judge(
        name,
        group,
        None if value is None else round(float(value), 6),
        getattr(thresholds, field),
        direction,
        DESCRIPTIONS[name],
        details,
    )


def _rounded(values: dict) -> dict:
    return {k: round(float(v), 6) if isinstance(v, float | np.floating) else v for k, v in values.items()}


def evaluate_gates(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    thresholds: GateThresholds | None = None,
    *,
    target: str | None = None,
    seed: int = 0,
    validity: float | None = None,
    max_rows: int = MAX_ROWS,
    max_privacy_queries: int = MAX_PRIVACY_QUERIES,
    timings: dict[str, float] | None = None,
) -> GateResult:
    """Measure every fidelity and privacy metric against the holdout and judge each against its threshold.

    Args:
        train: the real rows the model was fitted on.
        holdout: real rows the model never saw; fidelity is measured against them and privacy relative to them.
        synthetic: the decoded synthetic rows.
        schema: the table schema; only `schema.modelled` columns are compared.
        thresholds: gate thresholds (defaults when None).
        target: a column to measure ML utility on; without one that metric is skipped.
        seed: seeds every subsample and classifier, so a run is reproducible.
        validity: share of synthetic rows passing the input's validation suite (from `tasks.validate`); skipped if None.
        max_rows: rows per side in the detection test and per training set in ML utility.
        max_privacy_queries: query rows per set in the nearest-record search.
        timings: a dict to fill with seconds per step, kept out of the result so a seeded result is reproducible; the
            shared nearest-record search is timed as "nearest_records" (the four distance metrics then cost nothing).

    Returns:
        A `GateResult` with every metric's value, threshold, direction and verdict, and notes on subsampling.
        The `dcr_share_excess` metric's details carry the DCR histogram the report draws.
    """
    thresholds = thresholds or GateThresholds()
    _check_columns(schema, train=train, holdout=holdout, synthetic=synthetic)
    if target is not None and target not in {c.name for c in schema.modelled}:
        raise InvalidInputError(
            f"target {target!r} is not a modelled column; choose one of {[c.name for c in schema.modelled]}"
        )
    if len(holdout) == 0 or len(synthetic) == 0 or len(train) == 0:
        raise InvalidInputError("gates need non-empty train, holdout and synthetic tables")

    timings = {} if timings is None else timings

    def timed(name: str, fn: Callable[[], object]) -> object:
        start = time.perf_counter()
        out = fn()
        timings[name] = time.perf_counter() - start
        return out

    metrics: list[MetricResult] = []
    notes: list[str] = []

    # Fidelity, all against the holdout.
    shapes = timed("column_shapes", lambda: fidelity.column_shapes(holdout, synthetic, schema))
    metrics.append(_judge("column_shapes", "fidelity", shapes, thresholds))
    trends = timed("pair_trends", lambda: fidelity.pair_trends(holdout, synthetic, schema))
    worst = dict(sorted(trends.parts.items(), key=lambda kv: kv[1])[:10])
    metrics.append(
        MetricResult.judge(
            "pair_trends",
            "fidelity",
            None if trends.value is None else round(trends.value, 6),
            thresholds.pair_trends_min,
            "min",
            DESCRIPTIONS["pair_trends"],
            {"n_pairs": len(trends.parts), "worst_pairs": _rounded(worst)},
        )
    )
    detection = timed(
        "detection_auc", lambda: fidelity.detection_auc(holdout, synthetic, schema, seed=seed, max_rows=max_rows)
    )
    metrics.append(_judge("detection_auc", "fidelity", detection, thresholds))
    if max(len(holdout), len(synthetic)) > max_rows:
        notes.append(
            f"detection_auc: at most {max_rows} random rows per side (holdout {len(holdout)}, synthetic {len(synthetic)})"
        )
    if target is not None:
        utility = timed(
            "ml_utility",
            lambda: fidelity.ml_utility(train, holdout, synthetic, schema, target, seed=seed, max_rows=max_rows),
        )
        metrics.append(_judge("ml_utility", "fidelity", utility, thresholds))
        if utility.value is None:
            notes.append(f"ml_utility: the real-data model has no skill on {target!r}, so the ratio is undefined")
        if max(len(train), len(synthetic)) > max_rows:
            notes.append(f"ml_utility: models trained on at most {max_rows} random rows each")
    cover = timed("coverage", lambda: fidelity.coverage(holdout, synthetic, schema))
    metrics.append(_judge("coverage", "fidelity", cover, thresholds))
    if validity is not None:
        metrics.append(_judge("schema_validity", "fidelity", validity, thresholds))

    # Privacy, relative to what fresh real data (the holdout) looks like.
    exact = timed("exact_match_ratio", lambda: privacy.exact_match_ratio(train, holdout, synthetic, schema))
    metrics.append(_judge("exact_match_ratio", "privacy", exact, thresholds))
    dist = timed(
        "nearest_records",
        lambda: privacy.privacy_distances(
            train, holdout, synthetic, schema, seed=seed, max_queries=max_privacy_queries
        ),
    )
    n_queried = len(dist.syn_train)
    if max(len(synthetic), len(holdout), len(train)) > max_privacy_queries:
        notes.append(
            f"distance metrics: {max_privacy_queries} random query rows per set; nearest records searched in the full "
            f"train ({len(train)}), holdout ({len(holdout)}) and synthetic ({len(synthetic)}) sets"
        )
    metrics.append(
        _judge(
            "dcr_share_excess",
            "privacy",
            privacy.dcr_share_excess(dist),
            thresholds,
            histogram=privacy.dcr_histogram(dist),
        )
    )
    metrics.append(_judge("dcr_ratio", "privacy", privacy.dcr_ratio(dist), thresholds, queries=n_queried))
    metrics.append(_judge("nndr_ratio", "privacy", privacy.nndr_ratio(dist), thresholds))
    metrics.append(_judge("mia_auc", "privacy", privacy.mia_auc(dist), thresholds))

    notes += [
        f"{m.name}: could not be computed on this table (n/a), so it counts neither as passed nor as failed"
        for m in metrics
        if m.threshold is not None and m.value is None
    ]
    logger.info(
        "gates: %s (%s)",
        "passed" if all(m.passed is not False for m in metrics) else "refused",
        ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()),
    )
    return GateResult(metrics=metrics, notes=notes)


def _check_columns(schema: TableSchema, **frames: pd.DataFrame) -> None:
    names = [c.name for c in schema.modelled]
    for label, frame in frames.items():
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise InvalidInputError(
                f"{label} data lacks modelled columns {missing}; it must hold every column of the schema"
            )


evaluate_gates_task = task(name="evaluate-gates", cache_policy=NO_CACHE)(evaluate_gates)
