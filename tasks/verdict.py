"""All the checks on a synthetic table, as one `GateResult`: schema validity, fidelity, privacy, measured risks."""

from __future__ import annotations

import pandas as pd

from synthgate.schemas.gates import GateResult
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema
from synthgate.tasks.gates import evaluate_gates_task
from synthgate.tasks.risk import measure_risks_task
from synthgate.tasks.steps import PLAIN, Steps
from synthgate.tasks.validate import valid_row_share_task


def judge_output(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    synthetic: pd.DataFrame,
    schema: TableSchema,
    request: RunRequest,
    *,
    step: Steps = PLAIN,
) -> GateResult:
    """Run the fidelity and privacy gates against the holdout, with attack-measured risks added as information."""
    validity = step(valid_row_share_task)(synthetic, schema)
    private = request.epsilon is not None
    thresholds = request.thresholds.for_private_run() if private else request.thresholds
    gates: GateResult = step(evaluate_gates_task)(
        train,
        holdout,
        synthetic,
        schema,
        thresholds,
        target=request.target,
        seed=request.seed,
        validity=validity,
    )
    # Attack-measured risk beside the budget (tasks/risk.py): information metrics in the privacy group.
    risks = step(measure_risks_task)(train, holdout, synthetic, schema, seed=request.seed)
    notes = list(gates.notes)
    if private and thresholds.detection_auc_max is None and request.thresholds.detection_auc_max is not None:
        notes.append(
            "detection_auc is information only under --epsilon (the budget bounds what rows reveal; a classifier "
            "still tells DP noise apart); set thresholds.detection_auc_max in the request to gate on it"
        )
    return GateResult(metrics=[*gates.metrics, *risks], notes=notes)
