"""The `synthesize-table` flow: one real table in, one gated synthetic Parquet file (or an honest refusal) out.

Composition only: each line is one step of the data flow in the README (ingest, schema, validate, split, protect,
encode, train, sample, gates, publish, report); every decision lives in a named task or helper under `tasks/`. The
flow refuses to publish when a gate fails, but always writes the report, so the person who asked can see why.

The body is `run_table`, a plain function: the `@flow` calls it with Prefect tasks, and the Python API with
`orchestrate=False` calls it with the plain functions, so both run the same steps.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prefect import flow

from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.tasks.cache import model_key, save_beside_task
from synthgate.tasks.deliver import publish_outputs, refusal
from synthgate.tasks.dp_preprocess import prepare_training_task
from synthgate.tasks.output import draw_synthetic, synthesize_text_columns
from synthgate.tasks.plan import RunOptions, plan_run
from synthgate.tasks.preprocess import is_contract
from synthgate.tasks.publish import StagedParquet, remove_stale_temporaries
from synthgate.tasks.record import VERSION, build_metadata
from synthgate.tasks.report import create_run_artifacts, facts_from_metadata, render_report, write_report
from synthgate.tasks.report_html import mark_published
from synthgate.tasks.scan import BATCH_ROWS, MAX_TRAIN_ROWS
from synthgate.tasks.select import candidate_names
from synthgate.tasks.source import ingest_source, validate_source
from synthgate.tasks.split import split_holdout_task
from synthgate.tasks.steps import ORCHESTRATED, Steps
from synthgate.tasks.text_columns import columns_to_synthesize
from synthgate.tasks.threads import plan_threads, use_threads
from synthgate.tasks.training import encode_for_model, train_or_reuse
from synthgate.tasks.verdict import judge_output

__all__ = ["VERSION", "RunResult", "run_table", "synthesize_table"]

logger = logging.getLogger(__name__)
OUR_LOGGERS = ("synthgate",)


def show_progress_logs() -> None:
    """Let our INFO lines (training progress, step summaries) through to the terminal and Prefect's run logs.

    `PREFECT_LOGGING_EXTRA_LOGGERS` attaches Prefect's handlers to these loggers but leaves their level unset, so they
    would inherit the root logger's WARNING and stay silent.
    """
    for name in OUR_LOGGERS:
        if logging.getLogger(name).level == logging.NOTSET:
            logging.getLogger(name).setLevel(logging.INFO)


@dataclass
class RunResult:
    """What a run produced: where the output and report are, and the metadata written into the output."""

    output: Path | None
    report: Path
    metadata: OutputMetadata
    timings: dict[str, float] = field(default_factory=dict)
    model_cache: str = "off"  # "hit" (training skipped), "miss" (trained and stored) or "off" (--no-cache)

    @property
    def published(self) -> bool:
        return self.output is not None


@contextlib.contextmanager
def _timed(timings: dict[str, float], step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    timings[step] = round(time.perf_counter() - start, 3)


@flow(name="synthesize-table", log_prints=False)
def synthesize_table(
    request: RunRequest,
    *,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    write_url: str | None = None,
    write_table: str | None = None,
    stream: bool | None = None,
    max_train_rows: int = MAX_TRAIN_ROWS,
    batch_rows: int = BATCH_ROWS,
) -> RunResult:
    """Ingest, validate, split, encode, train, sample, check and publish one table, as one Prefect flow run.

    Args:
        request: the run.
        use_cache: reuse a fitted model stored under the same data + schema + training-request hash (`tasks.cache`).
        cache_dir: the model store (default `$SYNTHGATE_CACHE` or `~/.cache/synthgate/models`).
        write_url: also publish the synthetic rows to this SQLAlchemy database (with `write_table`), atomically.
        write_table: the table replaced in `write_url`.
        stream: read the input in batches and write the output in row groups; None decides by size: an input with
            more than `max_train_rows` rows or over 1 GiB, or more than 2M output rows.
        max_train_rows: streaming: train and hold out on a uniform sample of at most this many input rows.
        batch_rows: streaming: rows per input batch.
    """
    options = RunOptions(use_cache, cache_dir, write_url, write_table, stream, max_train_rows, batch_rows)
    return run_table(request, options, step=ORCHESTRATED)


def run_table(request: RunRequest, options: RunOptions | None = None, *, step: Steps = ORCHESTRATED) -> RunResult:
    """The flow's body; `step` says whether tasks run through Prefect or as plain functions.

    Raises:
        InvalidInputError: the request, the input or the schema cannot make a run (before any training).
        ValidationFailedError: the input breaks its schema.
        GateRefusedError: a gate failed; nothing was published, the report was written, the metadata is attached.
    """
    plan = plan_run(request, options or RunOptions())  # the request is checked before any work
    show_progress_logs()
    remove_stale_temporaries(request.output, request.resolved_report_path)  # left by a killed run
    threads = plan_threads(
        parallel_fits=len(candidate_names()) if request.model == "auto" else 1
    )  # decisions.md#thread-counts
    timings: dict[str, float] = {}
    with _timed(timings, "ingest"):
        ingested = ingest_source(request, plan, step=step)  # read (or profile) the source, resolve the schema
    with _timed(timings, "validate"):
        source = validate_source(ingested, request, plan, step=step)
    train, holdout = step(split_holdout_task)(source.frame, fraction=request.holdout_fraction, seed=request.seed)
    prepared = step(prepare_training_task)(  # PII actions, rare categories, and the DP budget split if any
        train,
        source.schema,
        model=request.model,
        epsilon=request.epsilon,
        delta=request.delta,
        rare_k=request.rare_category_k,
        public_schema=is_contract(request.schema_path),  # overrides leave the rest of the domain to the rows
        seed=request.seed,
        text_columns=columns_to_synthesize(source.schema, train, request.text) if request.epsilon else (),
    )
    if request.model != prepared.model:  # `auto` with a budget resolved to one private family
        request = request.model_copy(update={"model": prepared.model})
    with _timed(timings, "encode"), use_threads(threads):
        encoded = encode_for_model(prepared, request.model, step=step)
    key = model_key(source.digest, prepared.schema, request, version=VERSION)
    with _timed(timings, "train"), use_threads(threads):
        cache = (plan.cache_root, key) if plan.use_cache else None
        trained = train_or_reuse(encoded, prepared, holdout, request, cache=cache, step=step)
    n_rows = request.rows or len(prepared.train)
    staged = StagedParquet(request.output) if plan.stream_output(request, n_rows) else None
    with _timed(timings, "sample"), use_threads(threads):
        synthetic = draw_synthetic(
            trained,
            prepared.train,
            prepared.schema,
            request,
            n_rows,
            staged=staged,
            n_holdout=len(holdout),
            real=source.frame,  # every real row, holdout too: no key or fake value may equal a real one
            step=step,
        )
    with _timed(timings, "text"), use_threads(threads):
        text = synthesize_text_columns(
            synthetic, prepared, holdout, trained, request, streamed=staged is not None, step=step
        )
    synthetic = text.frame
    with _timed(timings, "gates"), use_threads(threads):
        gates = judge_output(prepared.train, holdout, synthetic, prepared.schema, request, step=step)
        gates = gates.model_copy(
            update={"metrics": [*gates.metrics, *text.metrics], "notes": [*gates.notes, *text.notes]}
        )
    metadata = build_metadata(
        request,
        source,
        prepared,
        trained,
        gates,
        n_holdout=len(holdout),
        n_output=staged.n_rows if staged is not None else len(synthetic),
        n_gated=len(synthetic),
        streamed_output=staged is not None,
        timings=timings,
        model_key=key,
    ).model_copy(update={"threads": threads.as_dict()})
    report = request.resolved_report_path
    with _timed(timings, "report"):
        facts = facts_from_metadata(metadata)
        html = render_report(
            schema=prepared.schema,
            real=holdout,
            synthetic=synthetic,
            gates=gates,
            facts=facts,
            candidates=trained.candidates,
            notes=metadata.notes,
            pending=gates.passed,  # says PUBLISHED only once the output is committed (mark_published below)
            text_examples=text.examples,
        )
        write_report(report, html)
        create_run_artifacts(gates, facts)
    if not gates.passed:
        raise refusal(gates, report, metadata, staged)
    with _timed(timings, "publish"):
        if trained.model_cache not in ("hit", "miss"):  # not in the store: kept beside the output, for `score`
            fitted = trained.fitted
            step(save_beside_task)(
                request.output, key, model=fitted.model, encoder=trained.encoder, name=fitted.name,
                fit_seconds=fitted.seconds,
            )  # fmt: skip
        opts = plan.options
        publish_outputs(
            synthetic,
            request,
            metadata,
            staged=staged,
            write_url=opts.write_url,
            write_table=opts.write_table,
            step=step,
        )
        mark_published(report, gates)
    return RunResult(
        output=request.output, report=report, metadata=metadata, timings=timings, model_cache=trained.model_cache
    )
