"""`synthgate schema infer`: a table's inferred schema, each column's kind with the rule that decided it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def schema_infer(
    input: Annotated[
        str,
        typer.Argument(
            help="CSV/Parquet path, SQLAlchemy URL or dataset:NAME; a folder of tables, or a URL without --table, "
            "shows the database's keys and relations with their evidence."
        ),
    ],
    table: Annotated[str | None, typer.Option(help="SQL sources: table name or SELECT query.")] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the schema YAML here (else print it).")
    ] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV text encoding (default: detected).")] = None,
    sep: Annotated[str | None, typer.Option(help="CSV field separator: , ; tab or | (default: detected).")] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(
            help="Release the bounds and categories under differential privacy at this epsilon, so that a private "
            "run given this schema spends nothing on its domain (the two epsilons add up)."
        ),
    ] = None,
    delta: Annotated[float | None, typer.Option(help="With --epsilon: the DP delta (default 1/(10 n)).")] = None,
) -> None:
    """Infer a table's schema (kinds, dtypes, bounds, categories, formats, PII flags) and print or write it as YAML.

    Each column's kind is listed with the rule that decided it (on stderr, so piped YAML stays clean); correct a
    wrong one in the YAML and pass it to `synthgate run --schema`.
    """
    from rich.table import Table

    from synthgate.flows.cli import _fail, console, out
    from synthgate.schemas.table import infer_schema
    from synthgate.tasks.ingest import data_hash, read_table
    from synthgate.tasks.publish import write_text_atomic
    from synthgate.tasks.reader import is_sql_url

    if table is None and (is_sql_url(input) or Path(input).is_dir()):
        from synthgate.flows.database_cli import infer_database

        infer_database(input, output)
        return
    try:
        frame = read_table(input, table=table, encoding=encoding, sep=sep)
        name = input.split(":", 1)[1] if input.startswith("dataset:") else (table or Path(input).stem)
        if epsilon is not None:
            from synthgate.tasks.dp_preprocess import infer_private_schema

            schema = infer_private_schema(frame, name=name, epsilon=epsilon, delta=delta)
        else:
            # Stamped with the rows' hash: a private run told this schema is public can say where its domain came
            # from.
            schema = infer_schema(frame, name=name).model_copy(update={"inferred_from": data_hash(frame)})
        text = schema.to_yaml()
    except Exception as exc:
        _fail(exc)
    summary = Table("column", "kind", "dtype", "why", title=f"{name}: {len(schema.columns)} columns", box=None)
    for col in schema.columns:
        why = (col.reason or "").removeprefix(f"{col.kind.value}: ")
        summary.add_row(col.name, col.kind.value, col.dtype, why)
    console.print(summary)
    if output:
        write_text_atomic(output, text)
        console.print(f"schema written to {output}")
    else:
        out.print(text, end="", markup=False, highlight=False)
