"""`synthgate database`: a whole database synthesised with its keys, light to import.

Its options are declared with typer alone, so `synthgate --help` lists the command without importing the flow stack;
`flows.database` loads when the command runs. `infer_database` is what `synthgate schema infer` shows for a folder or
a URL without `--table`: the keys and relations with their evidence, as a relations file to correct.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape


def database_command(
    input: Annotated[
        str, typer.Option("--input", "-i", help="SQLAlchemy URL, or a folder with one CSV/Parquet file per table.")
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Folder for <table>.parquet files and report.html (all or none).")
    ],
    scale: Annotated[
        float, typer.Option(help="Root tables' rows as a share of the source's (children follow their parents).")
    ] = 1.0,
    model: Annotated[
        str,
        typer.Option(
            help="Model family for every table the manifest does not name, as for `synthgate run --model` (gmm, arn, "
            "cart, vae, gan, autoencoder, auto). auto tries the families cheapest first within a time budget per table."
        ),
    ] = "auto",
    models: Annotated[
        Path | None,
        typer.Option(
            help="Model manifest: a YAML map `table: family` (or a `models:` section, as relations.yaml may hold)."
        ),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            help="auto: seconds all tables' candidates share (default: 5 s plus 1 s per 2,000 cells per table, at "
            "most 300 s); each table takes its share of what is left and past it keeps its cheapest candidate."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed for clusters, training, sampling and keys.")] = 0,
    relations: Annotated[
        Path | None,
        typer.Option(
            help="relations.yaml: primary keys and relations beside the declared ones (folder default: "
            "INPUT/relations.yaml)."
        ),
    ] = None,
    write_url: Annotated[
        str | None,
        typer.Option(
            help="Also replace every table in this database (SQLAlchemy URL) in one transaction, parents first, with "
            "its constraints enforced, when every gate passes."
        ),
    ] = None,
) -> None:
    """Synthesise a whole database: parents first, children per parent, keys regenerated, integrity gated."""
    from rich.table import Table

    from synthgate.flows.cli import EXIT_REFUSED, _check_prefect_api, _fail, console, out
    from synthgate.schemas.errors import GateRefusedError

    try:
        from synthgate.tasks.relations import check_source

        check_source(input)  # before the flow stack imports and a server starts: a wrong path should not cost seconds
        from synthgate.flows.database import synthesize_database_flow
        from synthgate.flows.failures import quiet_failure_logs

        _check_prefect_api()
        with quiet_failure_logs():
            result = synthesize_database_flow(
                input, output, scale=scale, model=model, models=models, seed=seed, relations=relations,
                write_url=write_url, time_budget=time_budget,
            )  # fmt: skip
    except GateRefusedError as exc:
        console.print(f"[bold red]REFUSED[/]: {escape(str(exc))}")
        raise typer.Exit(EXIT_REFUSED) from None
    except Exception as exc:
        _fail(exc)
    summary = Table(title="synthgate database")
    for column in ("table", "real rows", "synthetic rows", "model", "generated under", "seconds"):
        summary.add_column(column)
    syn = result.synthetic
    for name, frame in syn.tables.items():
        summary.add_row(name, f"{len(syn.real[name]):,}", f"{len(frame):,}", syn.models.get(name) or "-",
                        syn.context.get(name, "root"), str(syn.seconds.get(name, "")))  # fmt: skip
    out.print(summary)
    out.print(f"[bold green]PUBLISHED[/] {len(result.outputs)} tables to {output}")
    out.print(f"report: {result.report}")


def infer_database(source: str, output: Path | None) -> None:
    """Keys and relations of a whole database (declared, written or inferred), each with its evidence, as YAML."""
    from rich.table import Table

    from synthgate.flows.cli import _fail, console, out
    from synthgate.tasks.publish import write_text_atomic
    from synthgate.tasks.relations import read_database

    try:
        db = read_database(source)
    except Exception as exc:
        _fail(exc)
    keys = Table("table", "rows", "primary key", title=f"{db.source}: {len(db.tables)} tables", box=None)
    for name, frame in db.tables.items():
        keys.add_row(name, f"{len(frame):,}", ", ".join(db.schema.primary_key(name)) or "-")
    console.print(keys)
    relations = Table("relation", "from", "orphans", "evidence", title="relations", box=None)
    for rel in db.schema.relations:
        relations.add_row(rel.name, rel.source, rel.on_orphans, rel.evidence)
    console.print(relations if db.schema.relations else "no relations found: write them in relations.yaml")
    text = db.schema.to_yaml()
    if output:
        write_text_atomic(output, text)
        console.print(f"relations written to {output}; correct them and pass --relations to `synthgate database`")
    else:
        out.print(text, end="", markup=False, highlight=False)
