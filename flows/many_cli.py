"""`synthgate many`: many tables in parallel (threads or Ray), light to import.

Its options are declared with typer alone, so `synthgate --help` lists the command without importing the flow stack;
`flows.many` loads when the command runs. The exit code is the worst table's, from `flows.cli`'s table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def many_command(
    manifest: Annotated[Path, typer.Argument(help="YAML manifest: `tables:` to synthesise and/or a `database:`.")],
    runner: Annotated[
        str, typer.Option(help="threads (this machine) or ray (a local Ray, or the cluster at --ray-address).")
    ] = "threads",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster, e.g. ray://head:10001 or auto; default: start a local Ray.")
    ] = None,
    max_workers: Annotated[int, typer.Option(help="Tables at once (threads, or CPUs of a local Ray).")] = 2,
    gpus_per_table: Annotated[
        float | None,
        typer.Option(help="Ray: GPUs per table's task (default 1 when the cluster has GPUs, else none)."),
    ] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Always train; don't reuse stored models.")] = False,
) -> None:
    """Synthesise many tables in parallel; one summary at the end. Exit code: the worst table's (0 all published)."""
    from rich.table import Table

    from synthgate.flows.cli import EXIT_BAD_INPUT, EXIT_BUG, EXIT_OK, EXIT_REFUSED, _check_prefect_api, _fail, out
    from synthgate.flows.failures import quiet_failure_logs
    from synthgate.flows.many import load_manifest, run_many

    try:
        load_manifest(manifest)
        _check_prefect_api()
        with quiet_failure_logs():  # each table's error is in the summary; Prefect's run logs keep the tracebacks
            rows = run_many(
                manifest,
                runner=runner,
                ray_address=ray_address,
                max_workers=max_workers,
                use_cache=not no_cache,
                gpus_per_table=gpus_per_table,
            )
    except Exception as exc:
        _fail(exc)
    summary = Table(title="synthgate many")
    for column in ("table", "status", "rows", "model_cache", "seconds", "output / error"):
        summary.add_column(column)
    for row in rows:
        detail = row.get("output") or row.get("error", "")
        summary.add_row(
            row["table"], row["status"], str(row.get("rows", "")), str(row.get("model_cache", "")),
            str(row["seconds"]), str(detail),
        )  # fmt: skip
    out.print(summary)
    statuses = {row["status"] for row in rows}
    code = next(
        (
            c
            for s, c in (("error", EXIT_BUG), ("bad input", EXIT_BAD_INPUT), ("refused", EXIT_REFUSED))
            if s in statuses
        ),
        EXIT_OK,
    )
    raise typer.Exit(code)
