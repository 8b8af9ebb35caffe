"""The `synthgate` command line.

Exit codes (one table, used by every command):
    0  published (or the command did what it was asked)
    1  an unexpected error (a bug: the traceback is written to a log file whose path is printed; please report it)
    2  bad input: missing file, unreadable format, empty table, failed validation, invalid request
    3  a gate refused the synthetic data: nothing was written to the output path; the report says why
    4  `synthgate score`: the batch drifted from the rows the model learned from (scores and report written)
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from synthgate.models.registry import model_names

EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 1, 2, 3

app = typer.Typer(
    name="synthgate",
    help="Privacy-preserving synthetic data through Prefect flows, with gates that refuse to publish bad data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
schema_app = typer.Typer(help="Inspect and write table schemas.", no_args_is_help=True)
app.add_typer(schema_app, name="schema")
console = Console(stderr=True, soft_wrap=True)  # the terminal wraps: paths in messages stay whole
out = Console(soft_wrap=True)


def exit_code_for(exc: BaseException) -> int:
    """The one mapping from error classes to exit codes."""
    from synthgate.flows.failures import as_expected
    from synthgate.schemas.errors import GateRefusedError, InvalidInputError

    exc = as_expected(exc)
    if isinstance(exc, GateRefusedError):
        return EXIT_REFUSED
    if isinstance(exc, InvalidInputError):
        return EXIT_BAD_INPUT
    return EXIT_BUG


def _parse_conditions(values: list[str] | None) -> dict[str, Any] | None:
    import yaml

    from synthgate.schemas.errors import InvalidInputError

    if not values:
        return None
    parsed: dict[str, Any] = {}
    for item in values:
        if "=" not in item:
            raise InvalidInputError(f"--condition {item!r}: write it as COLUMN=VALUE, e.g. --condition species=Adelie")
        key, raw = item.split("=", 1)
        parsed[key.strip()] = yaml.safe_load(raw)  # numbers become numbers, text stays text
    return parsed


def _parse_text(values: list[str] | None) -> dict[str, str] | None:
    from synthgate.schemas.errors import InvalidInputError

    if not values:
        return None
    parsed: dict[str, str] = {}
    for item in values:
        key, _, action = item.partition("=")
        if action.strip() not in ("synthesize", "fake", "drop"):
            raise InvalidInputError(f"--text {item!r}: write it as COLUMN=synthesize|fake|drop, e.g. --text notes=fake")
        parsed[key.strip()] = action.strip()
    return parsed


@app.command()
def run(
    input: Annotated[
        str | None,
        typer.Option(
            "--input",
            "-i",
            help="CSV/Parquet path, SQLAlchemy URL, or dataset:NAME (penguins, wine, iris, breast_cancer, diabetes).",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Parquet file to publish (written only when every gate passes)."),
    ] = None,
    table: Annotated[str | None, typer.Option(help="SQL sources: a table name or a SELECT query.")] = None,
    encoding: Annotated[
        str | None, typer.Option(help="CSV text encoding, e.g. utf-8 or cp1252 (default: detected, and logged).")
    ] = None,
    sep: Annotated[
        str | None, typer.Option(help="CSV field separator: , ; tab or | (default: detected, and logged).")
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help=f"{', '.join(model_names())} (default gmm), or auto (try all, keep the most realistic; with "
            "--epsilon, the default: one private family by table size)."
        ),
    ] = None,
    time_budget: Annotated[
        float | None, typer.Option(help="--model auto: seconds all candidates share (default: scaled to the table).")
    ] = None,
    rows: Annotated[
        int | None, typer.Option(help="Synthetic rows to generate (default: as many as the training split).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for the split, training and sampling (default: 0).")] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML run request; command-line options override its values.")
    ] = None,
    schema: Annotated[
        Path | None, typer.Option(help="YAML schema (a full contract) or per-column overrides of the inferred one.")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column: measures ML utility (train synthetic, test real).")
    ] = None,
    device: Annotated[str | None, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs for the neural models.")] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="COLUMN=VALUE that every synthetic row must satisfy; repeatable.")
    ] = None,
    balance: Annotated[str | None, typer.Option(help="Categorical column whose classes the output equalises.")] = None,
    text: Annotated[
        list[str] | None,
        typer.Option(
            help="COLUMN=synthesize|fake|drop for a free-text column; repeatable (default: synthesize; with --epsilon: "
            "fake, and synthesize trains it with DP-SGD on a share of the budget)."
        ),
    ] = None,
    rows_per_class: Annotated[int | None, typer.Option(help="With --balance: rows per class.")] = None,
    report: Annotated[
        Path | None, typer.Option(help="HTML report path (default: beside the output, OUT.html).")
    ] = None,
    write_url: Annotated[
        str | None,
        typer.Option(help="Also publish to this database (SQLAlchemy URL), atomically, when every gate passes."),
    ] = None,
    write_table: Annotated[str | None, typer.Option(help="With --write-url: the table to replace.")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Always train; don't reuse a stored model ($SYNTHGATE_CACHE).")
    ] = False,
    # Privacy options.
    epsilon: Annotated[
        float | None,
        typer.Option(
            help="Differential-privacy budget: train the model privately, spending at most this epsilon (noisy "
            "marginals for marginal, the default with --model auto up to 100k rows; DP-SGD for vae, gan and "
            "autoencoder; DP-EM for gmm)."
        ),
    ] = None,
    delta: Annotated[
        float | None, typer.Option(help="With --epsilon: the DP delta (default 1/(10 n) for n training rows).")
    ] = None,
    rare_k: Annotated[
        int | None, typer.Option(help="Categories with fewer training rows become one '__rare__' bucket (default 5).")
    ] = None,
    pii_action: Annotated[
        list[str] | None,
        typer.Option(help="COLUMN=drop|hash|fake for a PII column (hash needs SYNTHGATE_HASH_KEY); repeatable."),
    ] = None,
    # Scale options.
    stream: Annotated[
        bool | None,
        typer.Option(
            "--stream/--no-stream",
            help="Read the input in batches and write the output in row groups (default: only for large inputs, "
            "over --max-train-rows rows or 1 GiB, or over 2M output rows).",
        ),
    ] = None,
    max_train_rows: Annotated[
        int, typer.Option(help="Streaming: train and hold out on a uniform sample of at most this many input rows.")
    ] = 1_000_000,
    batch_rows: Annotated[int, typer.Option(help="Streaming: rows per input batch.")] = 262_144,
) -> None:
    """Synthesise one table: ingest, validate, train, sample, check fidelity and privacy, publish Parquet + report."""

    def build_request() -> Any:
        from synthgate.schemas.request import RunRequest

        overrides: dict[str, Any] = {
            "input": input,
            "output": output,
            "table": table,
            "encoding": encoding,
            "sep": sep,
            "model": model,
            "rows": rows,
            "seed": seed,
            "schema_path": schema,
            "target": target,
            "device": device,
            "conditions": _parse_conditions(condition),
            "balance": balance,
            "text": _parse_text(text),
            "rows_per_class": rows_per_class,
            "report_path": report,
            "epsilon": epsilon,
            "delta": delta,
            "rare_category_k": rare_k,
            "time_budget": time_budget,
        }
        if pii_action:
            overrides["schema_path"] = _pii_overrides(pii_action, schema)
        request = RunRequest.from_sources(config, **overrides)
        if epochs is not None:
            request = request.model_copy(update={"model_options": {**request.model_options, "epochs": epochs}})
        _preflight(request)
        return request

    _run_flow(
        build_request,
        use_cache=not no_cache,
        write_url=write_url,
        write_table=write_table,
        stream=stream,
        max_train_rows=max_train_rows,
        batch_rows=batch_rows,
    )


def _pii_overrides(items: list[str], schema: Path | None) -> Path:
    """Write the user's schema (or an empty override) plus `pii_action` entries to a temporary YAML file."""
    import tempfile

    import yaml

    from synthgate.schemas.errors import InvalidInputError
    from synthgate.schemas.table import _read_yaml

    data = _read_yaml(schema) if schema is not None else {}
    columns = data.get("columns", [])
    if isinstance(columns, dict):
        columns = [{"name": k, **(v or {})} for k, v in columns.items()]
    by_name = {c["name"]: c for c in columns}
    for item in items:
        name, _, action = item.partition("=")
        if action not in ("drop", "hash", "fake"):
            raise InvalidInputError(f"--pii-action {item!r}: write it as COLUMN=drop, COLUMN=hash or COLUMN=fake")
        if name in by_name:
            by_name[name]["pii_action"] = action
        else:
            columns.append({"name": name, "pii_action": action})
    data["columns"] = columns
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="synthgate-pii-", delete=False) as handle:
        yaml.safe_dump(data, handle)
    return Path(handle.name)


def _preflight(request: Any) -> None:
    """Cheap checks before the flow imports: a missing file should not cost ten seconds."""
    from synthgate.tasks.reader import file_format, is_sql_url

    source = request.input
    if not (source.startswith("dataset:") or is_sql_url(source)):
        file_format(source)


def _check_prefect_api() -> None:
    from synthgate.flows.server import check_prefect_api

    check_prefect_api()


def _run_flow(build_request: Callable[[], Any], **options: Any) -> None:
    """Start the Prefect API first (a temporary server boots on the other core while the request is read and the
    flow stack imports), check the request and the API, then run the flow."""
    from synthgate.flows.server import PrefectApi
    from synthgate.flows.signals import stop_on_signals

    with stop_on_signals() as stopped, PrefectApi() as api:
        try:
            try:
                request = build_request()
                api.check()
            except Exception as exc:
                _fail(exc)
            _run_flow_on(api, request, **options)
            return
        except BaseException:
            if stopped.signum is None:
                raise
    console.print(
        f"[bold red]STOPPED[/] by {signal.Signals(stopped.signum).name} before the run finished: the output and the "
        "report are only ever replaced whole, so each is either as before or complete (the report's banner says which)"
    )
    raise typer.Exit(128 + stopped.signum)


def _run_flow_on(api: Any, request: Any, **options: Any) -> None:
    from synthgate.flows.failures import quiet_failure_logs
    from synthgate.flows.synthesize import synthesize_table
    from synthgate.schemas.errors import GateRefusedError
    from synthgate.tasks.report import summary_table

    api.ready(meanwhile=_import_later_steps)
    try:
        with quiet_failure_logs():  # the error is printed once, below; Prefect's run logs keep the traceback
            result = synthesize_table(request, **options)
    except GateRefusedError as exc:
        meta = getattr(exc, "metadata", None)
        if meta is not None:
            out.print(summary_table(meta))
        console.print(f"[bold red]REFUSED[/]: {escape(str(exc))}")
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as exc:
        _fail(exc)
    out.print(summary_table(result.metadata))
    out.print(f"[bold green]PUBLISHED[/] {result.metadata.n_rows_output} rows to {result.output}")
    out.print(f"report: {result.report}")


def _import_later_steps() -> None:
    """What the flow imports lazily and every run needs: Great Expectations (every run validates)."""
    import great_expectations  # noqa: F401


def _fail(exc: BaseException) -> None:
    """Print one clean block for an expected error, or one line and the crash log's path for a bug; exit."""
    from synthgate.flows.failures import as_expected, write_crash_log

    exc = as_expected(exc)
    code = exit_code_for(exc)
    if code == EXIT_BUG:
        summary = escape(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        try:
            where = f"full traceback in {write_crash_log(exc)}"
        except OSError:  # no writable log folder: the traceback is the only record left
            console.print_exception()
            where = "traceback above"
        console.print(f"[bold red]unexpected error[/]: {summary} ({where}; please report it with that file)")
    else:
        label = "REFUSED" if code == EXIT_REFUSED else "BAD INPUT"
        console.print(f"[bold red]{label}[/]: {escape(str(exc))}")
    raise typer.Exit(code)


@app.command("report")
def report_command(
    parquet: Annotated[Path, typer.Argument(help="A Parquet file published by `synthgate run`.")],
    html: Annotated[
        Path | None, typer.Option(help="Regenerate the HTML report here (re-reads the real input).")
    ] = None,
) -> None:
    """Print a published file's run summary (model, seed, data hash, metrics, verdicts) and optionally its report."""
    from synthgate.tasks.publish import read_metadata
    from synthgate.tasks.report import regenerate_report, summary_table

    try:
        meta = read_metadata(parquet)
        out.print(summary_table(meta))
        if html is not None:
            regenerate_report(parquet, html)
            out.print(f"report written to {html}")
    except Exception as exc:
        _fail(exc)


@app.command("setup")
def setup_command(
    gpu_slots: Annotated[
        int, typer.Option(help="Training tasks (tag `gpu`) allowed at once on this Prefect server: your GPU count.")
    ] = 1,
) -> None:
    """Create (or update) the `gpu` tag concurrency limit on the Prefect server at PREFECT_API_URL."""
    from synthgate.flows.deploy import ensure_gpu_limit

    try:
        _check_prefect_api()
        slots = ensure_gpu_limit(gpu_slots)
    except Exception as exc:
        _fail(exc)
    out.print(f"tag concurrency limit gpu = {slots}")


def _register_optional_commands() -> None:
    from synthgate.flows.database_cli import database_command  # typer only: each stack loads when its command runs
    from synthgate.flows.many_cli import many_command
    from synthgate.flows.schema_cli import schema_infer
    from synthgate.flows.score_cli import score_command

    schema_app.command("infer")(schema_infer)
    app.command("database")(database_command)
    app.command("many")(many_command)
    app.command("score")(score_command)
    try:
        from synthgate.flows.images_cli import images_command
    except ModuleNotFoundError as exc:
        if exc.name != "synthgate.flows.images_cli":
            raise
        return
    app.command("images")(images_command)


_register_optional_commands()


def main() -> None:
    """Console entry point (`synthgate`): run the command, then leave without tearing the interpreter down."""
    sys.unraisablehook = _log_unraisable
    try:
        app(prog_name="synthgate")
        code: Any = 0
    except SystemExit as exc:
        code = exc.code
    _leave(code)


def _log_unraisable(unraisable: Any) -> None:
    """Errors Python can only ignore (an asyncio transport's `__del__` after a stopped run's loop closed) go to the
    debug log, not the terminal: they are never the user's to act on, and a traceback would bury the one-screen
    message the run ends with."""
    import logging

    logging.getLogger("synthgate.cli").debug(
        "ignored in %r: %r", unraisable.object, unraisable.exc_value, exc_info=unraisable.exc_value
    )


def _leave(code: Any) -> None:
    """Exit once every exit handler has run and the streams are flushed, skipping the interpreter's teardown.

    After a run, freeing the modules and objects that torch, pandas, Great Expectations and Prefect left behind took
    seconds of a short command's wall time, and does nothing the operating system does not do at exit. The run's own
    work (outputs committed, Prefect's logs and events sent, the temporary server stopped) is finished before this.
    """
    import atexit
    import logging
    import os

    if code is not None and not isinstance(code, int):  # sys.exit("message"): print it, as Python would
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what Python runs first at exit: Prefect's and our handlers
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


if __name__ == "__main__":
    sys.exit(main())
