"""The `watch-table` flow: on a schedule, score the newest batch of a table with the model behind its synthetic copy,
publish the scores, and when the batch drifted, ask the `on-demand` deployment for a new synthetic copy of it.

Regenerating every night whether or not the data moved wastes a training run and publishes a copy that only differs
by noise; regenerating never leaves the copy describing data that no longer exists. The drift verdict of
`flows.score.run_score` decides. The trigger is `run_deployment` with `timeout=0`: the regeneration is queued on its
own deployment (its own work pool, concurrency and retries) and this run does not wait for it.

The logic is `watch_once`, a plain function whose trigger is an argument, so tests run it without a server.
"""

from __future__ import annotations

import glob
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow

from synthgate.flows.score import ScoreRequest, ScoreResult, run_score
from synthgate.schemas.errors import InvalidInputError
from synthgate.tasks.steps import ORCHESTRATED, PLAIN, Steps

logger = logging.getLogger(__name__)

REGENERATE_DEPLOYMENT = "synthetic-copy/on-demand"
BATCH_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def newest_batch(batches: str) -> str:
    """The newest table file (by modification time) in folder `batches` or matching glob `batches`; a SQL URL or
    `dataset:NAME` is its own newest batch.

    Raises:
        InvalidInputError: no table file there.
    """
    if batches.startswith("dataset:") or "://" in batches:
        return batches
    path = Path(batches)
    candidates = [str(p) for p in path.iterdir()] if path.is_dir() else glob.glob(batches)
    files = [p for p in candidates if Path(p).is_file() and Path(p).suffix.lower() in BATCH_SUFFIXES]
    if not files:
        raise InvalidInputError(
            f"{batches}: no CSV or Parquet batch found; point batches at a folder or a glob of them"
        )
    return max(files, key=lambda p: (Path(p).stat().st_mtime, p))


def regeneration_parameters(result: ScoreResult, batch: str, output_dir: Path) -> dict[str, Any]:
    """The `on-demand` deployment's parameters for a new synthetic copy of `batch`: the family, seed and privacy
    budget of the run behind the model (the family that scored, and defaults, when that run is unknown)."""
    request = result.metadata.request if result.metadata is not None else {}
    parameters = {
        "input": batch,
        "output": str(output_dir / f"{Path(batch).stem}-synthetic.parquet"),
        "model": request.get("model") or result.summary.model.removesuffix("_dp"),
        "seed": int(request.get("seed") or 0),
    }
    if request.get("epsilon") is not None:
        parameters["epsilon"] = float(request["epsilon"])
    return parameters


def watch_once(
    model: str,
    batches: str,
    output_dir: str | Path,
    *,
    fpr: float = 0.01,
    alpha: float = 0.01,
    cache_dir: str | None = None,
    trigger: Callable[[dict[str, Any]], Any] | None = None,
    step: Steps = PLAIN,
) -> dict[str, Any]:
    """Score the newest batch, write its scores and report under `output_dir`, and call `trigger` with the
    regeneration parameters when it drifted.

    Returns:
        A small JSON-friendly summary: batch, scores, report, drifted, anomalies, moved columns, triggered run.
    """
    batch = newest_batch(batches)
    out = Path(output_dir)
    stem = Path(batch).stem if "://" not in batch and not batch.startswith("dataset:") else "batch"
    request = ScoreRequest(
        model=model, input=batch, output=out / f"{stem}.scores.parquet", report=out / f"{stem}.drift.html",
        fpr=fpr, alpha=alpha, cache_dir=Path(cache_dir) if cache_dir else None,
    )  # fmt: skip
    result = run_score(request, step=step)
    s = result.summary
    triggered = None
    if s.drifted and trigger is not None:
        parameters = regeneration_parameters(result, batch, out)
        logger.info("watch: %s drifted (columns moved: %s); regenerating", batch, ", ".join(s.moved_columns))
        triggered = str(getattr(trigger(parameters), "id", "") or parameters["output"])
    return {
        "batch": batch,
        "scores": str(result.output),
        "report": str(result.report),
        "drifted": s.drifted,
        "anomalies": s.n_anomalies,
        "moved_columns": s.moved_columns,
        "regeneration": triggered,
    }


def _run_on_demand(parameters: dict[str, Any]) -> Any:
    """Queue one `on-demand` run with `parameters` and return without waiting for it (`timeout=0`)."""
    from prefect.deployments import run_deployment

    return run_deployment(REGENERATE_DEPLOYMENT, parameters=parameters, timeout=0, as_subflow=False)


@flow(name="watch-table")
def watch_table(
    model: str,
    batches: str,
    output_dir: str = "out/watch",
    fpr: float = 0.01,
    alpha: float = 0.01,
    cache_dir: str | None = None,
    regenerate: bool = True,
) -> dict[str, Any]:
    """Score the newest batch in `batches` with the model behind `model` (a published output); on drift, queue the
    `on-demand` deployment for a new synthetic copy of that batch (when `regenerate`)."""
    from prefect.artifacts import create_markdown_artifact

    summary = watch_once(
        model, batches, output_dir, fpr=fpr, alpha=alpha, cache_dir=cache_dir,
        trigger=_run_on_demand if regenerate else None, step=ORCHESTRATED,
    )  # fmt: skip
    moved = ", ".join(summary["moved_columns"]) or "none"
    create_markdown_artifact(
        key="watch-table",
        markdown=f"# {'DRIFT' if summary['drifted'] else 'No drift'}: {summary['batch']}\n\n"
        f"- anomalies: **{summary['anomalies']}**\n- columns moved: {moved}\n- scores: `{summary['scores']}`\n"
        f"- report: `{summary['report']}`\n- regeneration: {summary['regeneration'] or 'not needed'}\n",
        description="watch-table verdict",
    )
    return summary
