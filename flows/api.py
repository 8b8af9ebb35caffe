"""The Python API: `synthesize(df)` runs the same flow as `synthgate run`; `Synthesizer` is the fit/sample shape.

`synthesize` hands the DataFrame to the flow through a private temporary Parquet file (removed after the run), so
the rows take the very path a file takes on the command line: schema, validation, split, protection, gates, report
(docs/decisions.md#api-input).
`Synthesizer` (tasks/synthesizer.py) is the scikit-learn shape for notebooks that sample again and again from one fitted model; it
skips the gates (there is no holdout to judge against), so what it returns has not been checked for privacy.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from synthgate.schemas.errors import GateRefusedError, InvalidInputError
from synthgate.schemas.gates import GateResult, GateThresholds
from synthgate.schemas.metadata import OutputMetadata
from synthgate.schemas.request import RunRequest
from synthgate.tasks.synthesizer import Synthesizer  # noqa: F401  (the public API names it here)


@dataclass
class SynthesisResult:
    """What `synthesize` produced.

    Attributes:
        data: the synthetic rows with the source's columns and dtypes; None when a gate refused them.
        gates: every metric, threshold and verdict.
        metadata: what the Parquet footer carries (run id, request, seed, model, data hash, budget, timings).
        report_path: the HTML report (written whether or not the gates passed).
        output_path: the published Parquet file; None when refused.
    """

    data: pd.DataFrame | None
    gates: GateResult
    metadata: OutputMetadata
    report_path: Path
    output_path: Path | None

    @property
    def published(self) -> bool:
        return self.output_path is not None


def synthesize(
    df: pd.DataFrame,
    model: str = "auto",
    rows: int | None = None,
    seed: int = 0,
    target: str | None = None,
    thresholds: GateThresholds | dict[str, Any] | None = None,
    *,
    name: str = "table",
    output: str | Path | None = None,
    epsilon: float | None = None,
    conditions: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
    schema_path: str | Path | None = None,
    device: str = "auto",
    use_cache: bool = True,
    orchestrate: bool = True,
) -> SynthesisResult:
    """Synthesize a gated copy of `df`, as `synthgate run` does for a file.

    Args:
        df: the real table.
        model: gmm, vae, gan, autoencoder, or auto (fits every family and keeps the best on holdout fidelity).
        rows: synthetic rows; default as many as the training split.
        seed: makes the split, the fit and the draw reproducible.
        target: a column to measure machine-learning utility on.
        thresholds: gate thresholds (a `GateThresholds` or a dict of its fields); default the documented ones.
        name: the table's name in the schema and report.
        output: where to publish the Parquet file (the report goes beside it); default a fresh temporary folder.
        epsilon: a differential-privacy budget (with a model that has a private path).
        conditions: every synthetic row must satisfy column == value.
        model_options: hyperparameters passed to the model.
        schema_path: a YAML schema, or overrides of the inferred one.
        device: auto, cpu, cuda or cuda:N.
        use_cache: reuse a model fitted earlier on the same data and request.
        orchestrate: run as a Prefect flow run (a server, or an ephemeral one, is started); False calls the same steps
            as plain functions, with no Prefect server.

    Returns:
        The synthetic rows, gates, metadata and report path.

    Raises:
        GateRefusedError: a gate failed; `error.result` is the `SynthesisResult` (with `data=None`).
        InvalidInputError: the request or the table cannot make a run.
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputError(f"synthesize needs a pandas DataFrame, got {type(df).__name__}")
    out = Path(output) if output is not None else Path(tempfile.mkdtemp(prefix="synthgate-")) / f"{name}.parquet"
    with tempfile.TemporaryDirectory(prefix="synthgate-input-") as staging:
        source = Path(staging) / f"{name}.parquet"
        df.to_parquet(source, index=False)
        request = RunRequest.from_sources(
            input=str(source),
            output=out,
            model=model,
            rows=rows,
            seed=seed,
            target=target,
            thresholds=thresholds,
            epsilon=epsilon,
            conditions=conditions,
            model_options=model_options,
            schema_path=Path(schema_path) if schema_path is not None else None,
            device=device,
        )
        try:
            run = _run(request, use_cache=use_cache, orchestrate=orchestrate)
        except GateRefusedError as exc:
            metadata = getattr(exc, "metadata", None)
            exc.result = SynthesisResult(None, exc.gate_result, metadata, request.resolved_report_path, None)
            raise
    return SynthesisResult(pd.read_parquet(run.output), run.metadata.gates, run.metadata, run.report, run.output)


def _run(request: RunRequest, *, use_cache: bool, orchestrate: bool) -> Any:
    if orchestrate:
        from synthgate.flows.synthesize import synthesize_table

        return synthesize_table(request, use_cache=use_cache)
    from synthgate.flows.synthesize import run_table
    from synthgate.tasks.plan import RunOptions
    from synthgate.tasks.steps import PLAIN

    return run_table(request, RunOptions(use_cache=use_cache), step=PLAIN)
