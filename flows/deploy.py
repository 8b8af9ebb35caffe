"""Deployment entry points (see `deployments/prefect.yaml`) and the operational helpers around them.

Deployments take simple typed parameters (strings, numbers, a dict of thresholds) because Prefect turns a flow's
signature into the JSON schema that the UI, `prefect deployment run -p` and the API validate against. These flows only
translate those parameters into a `RunRequest` and call `synthesize_table` as a subflow, so a scheduled run and
`synthgate run` go through exactly the same pipeline.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow

from synthgate.flows.server import check_prefect_api  # noqa: F401  (re-exported: its old home)
from synthgate.flows.synthesize import RunResult, synthesize_table
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.request import RunRequest

logger = logging.getLogger(__name__)

GPU_TAG = "gpu"  # training tasks on CUDA carry it (`tasks.train.on_device`); a tag limit on it caps them at once


def _summary(result: RunResult) -> dict[str, Any]:
    """What a deployment run returns: small and JSON-friendly, so it shows in the UI and persists as a result."""
    meta = result.metadata
    return {
        "output": str(result.output),
        "report": str(result.report),
        "rows": meta.n_rows_output,
        "model": meta.model,
        "model_cache": result.model_cache,
        "data_hash": meta.data_hash,
        "run_id": meta.run_id,
    }


def _request(**fields: Any) -> RunRequest:
    """Build and validate the request; `None` means "use RunRequest's default"."""
    return RunRequest.from_sources(None, **fields)


@flow(name="synthetic-copy")
def synthetic_copy(
    input: str,
    output: str,
    table: str | None = None,
    model: str = "gmm",
    rows: int | None = None,
    seed: int = 0,
    thresholds: dict[str, float | None] | None = None,
    epsilon: float | None = None,
    schema_path: str | None = None,
    target: str | None = None,
    device: str = "auto",
    use_cache: bool = True,
    write_url: str | None = None,
    write_table: str | None = None,
) -> dict[str, Any]:
    """On demand: one gated synthetic copy of a file or a SQL table/query (the deployment's parameters).

    Args:
        input: CSV/Parquet path on the worker, a SQLAlchemy URL, or dataset:NAME.
        output: Parquet path on the worker (written only when every gate passes).
        table: for SQL inputs, a table name or a SELECT query.
        model: a table model named in `models.registry` (gmm, vae, gan, autoencoder), or auto.
        rows: synthetic rows (default: as many as the training split).
        seed: seed for split, training and sampling.
        thresholds: gate thresholds overriding the defaults, e.g. {"detection_auc_max": 0.75}.
        epsilon: differential-privacy budget for the neural models.
        schema_path: YAML schema or per-column overrides.
        target: column for the ML-utility metric.
        device: auto, cpu, cuda or cuda:N (training only).
        use_cache: reuse a stored fitted model for identical data and training request.
        write_url: also replace `write_table` in this database with the synthetic rows.
        write_table: the table written in `write_url`.

    Raises:
        GateRefusedError: a gate refused; the flow run ends Failed and nothing is published.
    """
    request = _request(
        input=input,
        output=output,
        table=table,
        model=model,
        rows=rows,
        seed=seed,
        thresholds=thresholds,
        epsilon=epsilon,
        schema_path=schema_path,
        target=target,
        device=device,
    )
    result = synthesize_table(request, use_cache=use_cache, write_url=write_url, write_table=write_table)
    return _summary(result)


@flow(name="nightly-augmentation")
def nightly_augmentation(
    input: str,
    output_dir: str,
    table: str | None = None,
    model: str = "gmm",
    rows: int | None = None,
    balance: str | None = None,
    rows_per_class: int | None = None,
    seed: int | None = None,
    thresholds: dict[str, float | None] | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Scheduled: a fresh dated batch of synthetic rows, e.g. class-balanced augmentation for a training set.

    The output is `<output_dir>/<name>-<YYYY-MM-DD>.parquet`, dated by the run's scheduled time so a late or retried
    run still writes the night it belongs to. Without a `seed`, the date is the seed (20250131): every night draws new
    rows, and any night can be reproduced.
    """
    from prefect.runtime import flow_run

    when = flow_run.scheduled_start_time or datetime.now(UTC)
    day = when.strftime("%Y-%m-%d")
    name = (table if table and " " not in table else None) or Path(input.split(":", 1)[-1]).stem or "table"
    request = _request(
        input=input,
        output=Path(output_dir) / f"{name}-{day}.parquet",
        table=table,
        model=model,
        rows=rows,
        balance=balance,
        rows_per_class=rows_per_class,
        seed=seed if seed is not None else int(when.strftime("%Y%m%d")),
        thresholds=thresholds,
        device=device,
    )
    return _summary(synthesize_table(request))


# ------------------------------------------------------------------------------------------------ operations


def ensure_gpu_limit(slots: int, *, tag: str = GPU_TAG) -> int:
    """Create or update the tag concurrency limit that caps how many training tasks run at once.

    Every `fit-model` task run carries the `gpu` tag; with a limit of N, the server lets at most N of them hold a
    slot, whatever the number of workers or mapped tables. Set N to the number of GPUs (or to 1 on a CPU box so
    parallel tables don't fight for the cores while training).

    Returns:
        The limit now in force.
    """
    if slots < 1:
        raise InvalidInputError(f"the gpu limit must be at least 1 slot, got {slots}")
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=tag, concurrency_limit=slots)  # upsert by tag
        limit = client.read_concurrency_limit_by_tag(tag)
    logger.info("concurrency_limit tag=%s slots=%d", tag, limit.concurrency_limit)
    return int(limit.concurrency_limit)
