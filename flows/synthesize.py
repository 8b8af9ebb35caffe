"""The `synthesize-table` flow: one real table in, one gated synthetic Parquet file (or an honest refusal) out.

Composition only: each line calls one task. The flow refuses to publish when a gate fails, but always writes the
report, so the person who asked can see why.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from prefect import flow, unmapped

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import model_names, normalization_for
from synthgate.schemas.errors import GateRefusedError, InvalidInputError
from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import CandidateScore, OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema
from synthgate.tasks.cache import cache_root, load_cached_task, model_key, save_cached_task
from synthgate.tasks.dp_preprocess import prepare_training_task
from synthgate.tasks.gates import evaluate_gates_task
from synthgate.tasks.ingest import data_hash, read_table_task
from synthgate.tasks.preprocess import encode_training_task, resolve_schema_task
from synthgate.tasks.protect import complete_output_task
from synthgate.tasks.publish import StagedParquet, remove_stale_temporaries, write_parquet_task
from synthgate.tasks.report import create_run_artifacts, facts_from_metadata, mark_published, write_report
from synthgate.tasks.risk import measure_risks_task
from synthgate.tasks.sample import sample_rows_task, stream_output_task
from synthgate.tasks.scan import (
    BATCH_ROWS,
    MAX_TRAIN_ROWS,
    profile_source_task,
    resolve_profiled_schema,
    scan_source_task,
    stream_input,
)
from synthgate.tasks.select import candidate_names, evaluate_candidate_task, pick_best
from synthgate.tasks.split import split_holdout_task
from synthgate.tasks.sql import commit_staged_task, discard_staged, split_table_name, stage_table_task
from synthgate.tasks.stop import stop_scope
from synthgate.tasks.threads import plan_threads, use_threads
from synthgate.tasks.train import FitResult, fit_model_task
from synthgate.tasks.validate import valid_row_share_task, validate_table_task

logger = logging.getLogger(__name__)
VERSION = "0.1.0"
OUR_LOGGERS = ("synthgate",)
# Issue #9: past these sizes a run streams its input (two batched passes) and its output (row groups).
STREAM_OUTPUT_ROWS = 2_000_000
STREAM_INPUT_BYTES = 1 << 30
GATE_SAMPLE_ROWS = 200_000  # streamed output: the gates and the report look at the first rows (independent draws)


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


def _run_id() -> str:
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def _table_name(request: RunRequest) -> str:
    if request.input.startswith("dataset:"):
        return request.input.split(":", 1)[1]
    if request.table and not request.table.lower().startswith(("select", "with")):
        return request.table
    return Path(request.input).stem or "table"


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
    """Ingest, validate, split, encode, train, sample, check and publish one table.

    Args:
        request: the run.
        use_cache: reuse a fitted model stored under the same data + schema + training-request hash (`tasks.cache`).
        cache_dir: the model store (default `$SYNTHGATE_CACHE` or `~/.cache/synthgate/models`).
        write_url: also publish the synthetic rows to this SQLAlchemy database (with `write_table`), atomically.
        write_table: the table replaced in `write_url`.
        stream: read the input in batches and write the output in row groups (issue #9); None decides by size: an
            input with more than `max_train_rows` rows or over 1 GiB, or more than 2M output rows.
        max_train_rows: streaming: train and hold out on a uniform sample of at most this many input rows.
        batch_rows: streaming: rows per input batch.
    """
    if bool(write_url) != bool(write_table):
        raise InvalidInputError("write-back needs both --write-url URL and --write-table NAME")
    if write_table:
        split_table_name(write_table)  # a bad name fails now, not after training
    show_progress_logs()
    remove_stale_temporaries(request.output, request.resolved_report_path)  # left by a killed run
    timings: dict[str, float] = {}
    source = request.input if not request.table else f"{request.input} ({request.table})"
    streaming = _streaming(request, stream, max_train_rows, write_url)
    if streaming:  # issue #9: pass one profiles the schema, pass two validates, hashes and samples; bounded memory
        with _timed(timings, "ingest"):
            profiled = profile_source_task(
                request.input, table=request.table, name=_table_name(request), batch_rows=batch_rows
            )
            schema = resolve_profiled_schema(profiled, request.schema_path)
        with _timed(timings, "validate"):
            scanned = scan_source_task(
                request.input,
                schema,
                table=request.table,
                display=source,
                max_rows=max_train_rows + round(max_train_rows * request.holdout_fraction),
                seed=request.seed,
                batch_rows=batch_rows,
            )
        frame, digest, n_input = scanned.sample, scanned.data_hash, scanned.n_rows
    else:
        with _timed(timings, "ingest"):
            frame = read_table_task(request.input, table=request.table)
            digest = data_hash(frame)
            schema = resolve_schema_task(frame, name=_table_name(request), schema_path=request.schema_path)
        with _timed(timings, "validate"):
            validate_table_task(frame, schema, source=source)
        n_input = len(frame)
    train, holdout = split_holdout_task(frame, fraction=request.holdout_fraction, seed=request.seed)
    # Privacy by construction (issue #7, tasks/dp_preprocess.py): PII actions checked, rare categories merged, and with
    # --epsilon the budget split between DP preprocessing and DP-SGD, and the encoder built from public/DP bounds.
    prepared = prepare_training_task(
        train,
        schema,
        model=request.model,
        epsilon=request.epsilon,
        delta=request.delta,
        rare_k=request.rare_category_k,
        public_schema=request.schema_path is not None,
        seed=request.seed,
    )
    train, schema = prepared.train, prepared.schema
    auto = request.model == "auto"
    if not auto and request.model not in model_names():
        raise InvalidInputError(f"model {request.model!r} is not available; choose one of {model_names()}")
    if auto and request.epsilon is not None:
        raise InvalidInputError("--model auto cannot be combined with --epsilon: name one model to spend the budget on")
    threads = plan_threads(parallel_fits=len(candidate_names()) if auto else 1)  # docs/decisions.md#thread-counts
    with _timed(timings, "encode"), use_threads(threads):
        if auto:  # each candidate encodes the rows the way its family asks (tasks/select.py)
            encoder, encoded = None, None
        elif prepared.private is not None:  # DP: encoder state from public bounds or DP estimates (issue #7)
            encoder, encoded = prepared.private.encoder, prepared.private.encoded
        else:
            encoder, encoded = encode_training_task(train, schema, normalization=normalization_for(request.model))
    # Model cache (tasks/cache.py): same data + schema + training fields -> reuse the stored model and encoder.
    root, key = cache_root(cache_dir), model_key(digest, schema, request, version=VERSION)
    use_cache = use_cache and not auto  # auto keeps no single model to key on
    cached = load_cached_task(root, key, device=request.device) if use_cache else None
    model_cache = "off" if not use_cache else ("hit" if cached else "miss")
    candidates: list[CandidateScore] = []
    with _timed(timings, "train"), use_threads(threads):
        if auto:  # every family as a mapped task, best holdout fidelity wins (tasks/select.py)
            fitted, encoder, candidates = _train_candidates(train, holdout, schema, request)
        elif cached is not None:
            encoder = cached.encoder
            fitted = FitResult(model=cached.model, name=cached.name, seconds=0.0, device=_device_of(cached.model))
        else:
            fitted = fit_model_task(
                encoded,
                model=prepared.model_name(request.model),  # gmm + epsilon trains the private gmm_dp (issue #7)
                spans=encoder.spans_,
                device=request.device,
                options=prepared.model_options(request.model_options),  # + DP budget (issue #7)
                seed=request.seed,
            )
            if use_cache:
                save_cached_task(
                    root, key, model=fitted.model, encoder=encoder, name=fitted.name, fit_seconds=fitted.seconds
                )
    n_rows = request.rows or len(train)
    streaming = streaming or (stream is None and n_rows > STREAM_OUTPUT_ROWS and not request.balance and not write_url)
    staged = StagedParquet(request.output) if streaming else None
    with _timed(timings, "sample"), use_threads(threads):
        if staged is not None:  # issue #9: row groups into the staged file; the gates see the first rows
            synthetic = stream_output_task(
                fitted.model,
                encoder,
                schema,
                n_rows,
                staged,
                seed=request.seed,
                keep_rows=max(GATE_SAMPLE_ROWS, len(holdout)),
                conditions=request.conditions,
                real=train,
            )
        else:
            synthetic = sample_rows_task(
                fitted.model,
                encoder,
                n_rows,
                seed=request.seed,
                conditions=request.conditions,
                balance=request.balance,
                rows_per_class=request.rows_per_class,
                train=train,
            )
            synthetic = complete_output_task(synthetic, schema, seed=request.seed, real=train)
    with _timed(timings, "gates"), use_threads(threads):
        validity = valid_row_share_task(synthetic, schema)
        gates: GateResult = evaluate_gates_task(
            train,
            holdout,
            synthetic,
            schema,
            request.thresholds,
            target=request.target,
            seed=request.seed,
            validity=validity,
        )
        # Attack-measured risk beside the budget (issue #7, tasks/risk.py): information metrics in the privacy group.
        risks = measure_risks_task(train, holdout, synthetic, schema, seed=request.seed)
        gates = GateResult(metrics=[*gates.metrics, *risks], notes=gates.notes)
    epsilon_spent, delta_spent = prepared.spent(fitted.model)
    metadata = OutputMetadata(
        synthgate_version=VERSION,
        run_id=_run_id(),
        created_at=datetime.now(UTC),
        source=request.input,
        table=request.table,
        model=fitted.name,
        seed=request.seed,
        n_rows_input=n_input,
        n_rows_train=len(train),
        n_rows_holdout=len(holdout),
        n_rows_output=staged.n_rows if staged is not None else len(synthetic),
        data_hash=digest,
        schema=schema.model_dump(mode="json"),
        request=request.model_dump(mode="json"),
        gates=gates,
        timings={**timings, "fit_model": round(fitted.seconds, 3)},
        epsilon=epsilon_spent,
        delta=delta_spent,
        candidates=candidates,
        notes=[
            f"trained on {fitted.device}" if model_cache != "hit" else f"model reused from cache on {fitted.device}",
            *prepared.notes,
            *_streaming_notes(staged, len(synthetic), len(frame), n_input),
        ],
        device=fitted.device,
        model_cache=model_cache,
        model_key=key,
        threads=threads.as_dict(),
    )
    facts = facts_from_metadata(metadata)
    report = request.resolved_report_path
    with _timed(timings, "report"):
        write_report(
            report,
            schema=schema,
            real=holdout,
            synthetic=synthetic,
            gates=gates,
            facts=facts,
            candidates=candidates,
            notes=metadata.notes,
            pending=gates.passed,  # says PUBLISHED only once the output is committed (mark_published below)
        )
        create_run_artifacts(gates, facts)
    if not gates.passed:
        if staged is not None:
            staged.discard()
        error = GateRefusedError(gates, str(report))
        error.metadata = metadata
        raise error
    with _timed(timings, "publish"):
        # Database write-back (tasks/sql.py): staged first, swapped in only once the Parquet file is published.
        staged = stage_table_task(synthetic, write_url, write_table) if write_url and write_table else None
        try:
            if staged is not None:
                staged.commit(metadata)
            else:
                write_parquet_task(synthetic, request.output, metadata)
        except BaseException:
            if staged is not None:
                discard_staged(staged)
            raise
        if staged is not None:
            commit_staged_task(staged)
        mark_published(report, gates)
    return RunResult(output=request.output, report=report, metadata=metadata, timings=timings, model_cache=model_cache)


def _streaming(request: RunRequest, stream: bool | None, max_train_rows: int, write_url: str | None) -> bool:
    """Issue #9: whether the input is read in batches (asked for, or the input is too large to read whole)."""
    if stream is False:
        return False
    if stream is None and not stream_input(
        request.input, table=request.table, max_rows=max_train_rows, min_bytes=STREAM_INPUT_BYTES
    ):
        return False
    if request.balance or write_url:
        raise InvalidInputError(
            "the streaming path (a large input or --stream) supports neither --balance nor --write-url yet; "
            "pass --no-stream to read the table whole"
        )
    return True


def _streaming_notes(staged: StagedParquet | None, n_kept: int, n_sample: int, n_input: int) -> list[str]:
    notes = []
    if n_sample < n_input:
        notes.append(f"trained and held out on a uniform sample of {n_sample} of {n_input} input rows")
    if staged is not None:
        notes.append(f"output written in row groups; gates and report measured on the first {n_kept} rows")
    return notes


def _device_of(model: object) -> str:
    """Where a reused model's tensors live (models keep their `device`; CPU if one does not say)."""
    return str(getattr(model, "device_", None) or getattr(model, "device", None) or "cpu")


def _train_candidates(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema, request: RunRequest
) -> tuple[FitResult, TableEncoder, list[CandidateScore]]:
    """`--model auto`: fit every table family in parallel, keep the best on holdout fidelity, record them all."""
    names = candidate_names()
    with stop_scope():  # an error here (a signal, a cancellation) stops the candidates' fits at their next epoch
        futures = evaluate_candidate_task.map(
            names,
            unmapped(train),
            unmapped(holdout),
            unmapped(schema),
            device=unmapped(request.device),
            options=unmapped(request.model_options),
            seed=unmapped(request.seed),
        )
        outcomes = [future.result() for future in futures]
    best = pick_best(outcomes)
    logger.info("auto: kept %s (score %.3f) of %s", best.name, best.score, ", ".join(names))
    fitted = FitResult(model=best.model, name=best.name, seconds=best.fit_seconds, device=best.device)
    return fitted, best.encoder, [c.as_score() for c in outcomes]
