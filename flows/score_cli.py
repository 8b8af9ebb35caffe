"""`synthgate score`: the command line front end of `flows.score.run_score`, light to import.

Its options are declared with typer alone, so `synthgate --help` lists the command without importing torch or
Prefect; they load when the command runs. Exit codes follow `flows.cli`'s table, plus 4 for a batch that drifted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

EXIT_DRIFT = 4


def score_command(
    model: Annotated[
        str,
        typer.Option("--model", "-m", help="Published output of `synthgate run` (OUT.parquet) or a model directory."),
    ],
    input: Annotated[
        str, typer.Option("--input", "-i", help="The batch to score: CSV/Parquet path, SQLAlchemy URL or dataset:NAME.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file of the batch's rows with their scores.")],
    fpr: Annotated[
        float, typer.Option(help="False-positive rate the threshold is calibrated to on rows the model never saw.")
    ] = 0.01,
    report: Annotated[Path | None, typer.Option(help="Write an HTML drift report here.")] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="Rows the model never saw to calibrate on (default: the run's holdout, rebuilt)."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(help="The model store the run used (default $SYNTHGATE_CACHE or ~/.cache/...).")
    ] = None,
    table: Annotated[str | None, typer.Option(help="SQL batches: a table name or a SELECT query.")] = None,
    encoding: Annotated[str | None, typer.Option(help="CSV text encoding (default: detected).")] = None,
    sep: Annotated[str | None, typer.Option(help="CSV field separator (default: detected).")] = None,
    alpha: Annotated[float, typer.Option(help="Family-wise significance level of the drift verdict.")] = 0.01,
) -> None:
    """Score a batch with the model behind a published output; exit 0 no drift, 4 drift, 2 bad input.

    Each row gets an anomaly score, a flag at the calibrated threshold and the three columns behind its score.
    """
    from rich.console import Console
    from rich.table import Table

    from synthgate.flows.cli import _fail

    try:
        from synthgate.flows.score import ScoreRequest, run_score

        result = run_score(
            ScoreRequest(
                model=model, input=input, output=output, fpr=fpr, report=report, reference=reference,
                cache_dir=cache_dir, table=table, encoding=encoding, sep=sep, alpha=alpha,
            )
        )  # fmt: skip
    except Exception as exc:
        _fail(exc)
    s = result.summary
    summary = Table(title=f"synthgate score: {'DRIFT' if s.drifted else 'no drift'}", box=None, show_header=False)
    summary.add_row("model", f"{s.model} ({s.model_source})")
    summary.add_row("rows", str(s.n_rows))
    summary.add_row("anomalies", f"{s.n_anomalies} above {s.threshold.value:.4g} (fpr <= {s.threshold.fpr_bound:.2%})")
    summary.add_row(
        "scores vs holdout", f"KS p = {s.score_drift.p_value:.3g}, P(batch > holdout) = {s.score_drift.auc:.2f}"
    )
    summary.add_row("columns moved", ", ".join(s.moved_columns) or "none")
    summary.add_row("scores", str(result.output))
    if result.report is not None:
        summary.add_row("report", str(result.report))
    Console().print(summary)
    for note in s.notes:
        Console(stderr=True).print(f"note: {note}", markup=False)
    raise typer.Exit(EXIT_DRIFT if s.drifted else 0)
