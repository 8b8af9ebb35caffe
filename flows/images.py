"""`synthesize_images`: one image run as a Prefect flow, and `images_command`, its `synthgate images` front end.

ingest -> validate -> split -> fit (gpu) -> sample -> fidelity + privacy gates -> report -> publish (only if passed).
The flow is composition only; every step is a plain function in `tasks.images` with a thin task wrapper.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from prefect import flow

from synthgate.flows.images_cli import images_command
from synthgate.schemas.errors import GateRefusedError, InvalidInputError
from synthgate.schemas.gates import GateResult
from synthgate.schemas.image import ImageRunRequest
from synthgate.schemas.metadata import OutputMetadata
from synthgate.tasks.images.augment import plan_counts, sample_images_task
from synthgate.tasks.images.fidelity import check_fidelity_task
from synthgate.tasks.images.ingest import ingest_images_task
from synthgate.tasks.images.privacy import check_privacy_task
from synthgate.tasks.images.publish import publish_images_task
from synthgate.tasks.images.report import build_report, vae_interpolations, write_report_task
from synthgate.tasks.images.train import check_image_model, fit_image_model_task
from synthgate.tasks.images.validate import split_images_task, validate_images_task
from synthgate.tasks.train import on_device

log = logging.getLogger(__name__)

EXIT_PUBLISHED, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 2, 3


@dataclass
class ImageRunResult:
    """What one image run produced: the verdict, where things were written, metrics and timings."""

    published: bool
    output: Path | None
    report_path: Path
    gates: GateResult
    counts: dict[str, int]
    timings: dict[str, float] = field(default_factory=dict)
    fit_seconds_per_epoch: float | None = None


class _Clock:
    """Seconds per step, for the metadata and the summary table."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._t, 3)
        self._t = now


def _publish_summary(gates: GateResult, counts: dict[str, int], output: Path | None, report: Path) -> None:
    try:
        from prefect.artifacts import create_markdown_artifact

        rows = "\n".join(
            f"| {m.name} | {m.value if m.value is None else round(m.value, 4)} | {m.threshold} | "
            f"{ {True: 'pass', False: 'FAIL', None: 'info'}[m.passed] } |"
            for m in gates.metrics
        )
        create_markdown_artifact(
            key="synthgate-images-summary",
            markdown=f"# {gates.summary()}\n\noutput: `{output}`  \nreport: `{report}`  \ncounts: {counts}\n\n"
            f"| metric | value | threshold | verdict |\n|---|---|---|---|\n{rows}\n",
            description="synthgate image run",
        )
    except Exception as exc:  # an artifact is for people; never fail a run over it
        log.warning("could not create the summary artifact: %s", exc)


@flow(name="synthesize-images")
def synthesize_images(request: ImageRunRequest) -> ImageRunResult:
    """Run one image request end to end; raises `GateRefusedError` (report written, nothing published) on refusal."""
    check_image_model(request.model)  # before any work: the registry is the one list of families
    clock, run_id = _Clock(), _run_id()
    # Ingest and validate: nothing is trained on bad input.
    raw = ingest_images_task(request.input, resize=request.resize)
    data = validate_images_task(raw, min_per_class=request.min_per_class)
    train, holdout = split_images_task(data, holdout_fraction=request.holdout_fraction, seed=request.seed)
    clock.lap("ingest_validate")
    # Train and sample.
    fit = on_device(fit_image_model_task, request.device)(
        train, request.model, epochs=request.epochs, seed=request.seed, device=request.device,
        options=request.model_options, allow_flips=request.allow_flips, epsilon=request.epsilon, delta=request.delta,
    )  # fmt: skip
    clock.lap("fit")
    private = request.epsilon is not None  # DP: class shares are private, so equal counts per class
    counts = plan_counts(
        data.schema, train.schema, per_class=request.per_class, balance=request.balance, private=private
    )
    synthetic = sample_images_task(fit.model, counts, train.schema, seed=request.seed)
    clock.lap("sample")
    # Gates, measured against the holdout.
    fidelity = check_fidelity_task(
        train, holdout, synthetic, request.thresholds, seed=request.seed, device=request.device
    )
    privacy = check_privacy_task(train, holdout, synthetic, request.thresholds)
    notes = [
        f"{len(synthetic)} synthetic images vs {len(holdout)} holdout images; the feature classifier scores "
        f"{fidelity.classifier_holdout_accuracy:.3f} accuracy on the holdout"
    ]
    epsilon_spent, delta_spent = _spent(fit.privacy)
    if fit.privacy is not None:
        notes.append(
            f"differential privacy: ({epsilon_spent:g}, {delta_spent:.2g})-DP training (DP-SGD"
            f"{', DP-EM latent mixtures' if 'mixture_epsilon' in fit.privacy else ''}); uniform class prior and equal "
            "per-class counts; the class list is treated as public, and per-class input counts are left out of the "
            "output metadata"
        )
    gates = GateResult(metrics=[*fidelity.metrics, *privacy], notes=notes)
    clock.lap("gates")
    # Report (always), then publish (only if passed).
    report_path = request.resolved_report_path
    facts: dict[str, Any] = {
        "run id": run_id, "input": request.input, "model": request.model, "seed": request.seed,
        "epochs": fit.epochs, "fit seconds": round(fit.fit_seconds, 2), "image shape (C, H, W)": str(data.schema.shape),
        "classes": len(data.schema.classes), "input images": len(data), "train / holdout": f"{len(train)} / {len(holdout)}",
        "synthetic images": len(synthetic), "output": str(request.output) if gates.passed else "(not published)",
        "epsilon": f"{epsilon_spent} (delta {delta_spent:.2g})" if epsilon_spent is not None
        else "none (no differential privacy)",
    }  # fmt: skip
    html = build_report(
        title=f"synthgate images: {request.model} on {request.input}", gates=gates, classes=data.schema.classes,
        real_images=holdout.images, real_labels=holdout.labels, synthetic_images=synthetic.images,
        synthetic_labels=synthetic.labels, facts=facts, per_class_accuracy=fidelity.per_class_accuracy,
        interpolations=vae_interpolations(fit.model, train.images, train.labels, data.schema.classes),
    )  # fmt: skip
    write_report_task(report_path, html)
    clock.lap("report")
    if not gates.passed:
        _publish_summary(gates, counts, None, report_path)
        raise GateRefusedError(gates, str(report_path))
    metadata = OutputMetadata(
        synthgate_version=_version(), run_id=run_id, created_at=datetime.now(UTC), source=request.input,
        model=request.model, seed=request.seed, n_rows_input=len(data), n_rows_train=len(train),
        n_rows_holdout=len(holdout), n_rows_output=len(synthetic), data_hash=data.content_hash(),
        schema=data.schema.model_dump(exclude={"counts"} if private else None), request=request.model_dump(mode="json"),
        gates=gates, timings=clock.timings, kind="images", counts=counts, fit_seconds_per_epoch=fit.seconds_per_epoch,
        epsilon=epsilon_spent, delta=delta_spent,
    )  # fmt: skip
    output = publish_images_task(
        synthetic.images, synthetic.labels, data.schema.classes, request.output, gates,
        metadata.model_dump(mode="json", by_alias=True), report_path=str(report_path),
    )  # fmt: skip
    clock.lap("publish")
    _publish_summary(gates, counts, output, report_path)
    return ImageRunResult(True, output, report_path, gates, counts, clock.timings, fit.seconds_per_epoch)


def _spent(privacy: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """(epsilon, delta) the fit spent, from the model's privacy report; (None, None) without DP."""
    if privacy is None:
        return None, None
    return round(float(privacy["epsilon"]), 4), float(privacy["delta"])


def _run_id() -> str:
    """The Prefect flow run id, so metadata, report and UI name the same run."""
    from prefect.runtime import flow_run

    return str(flow_run.id or uuid.uuid4())


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("synthgate")
    except Exception:
        return "0+unknown"


def _print_summary(gates: GateResult, *, status: str, output: Path | None, report: Path | None, seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"synthgate images: {status}")
    for col in ("metric", "value", "threshold", "verdict"):
        table.add_column(col)
    for m in gates.metrics:
        op = ">=" if m.direction == "min" else "<="
        verdict = {True: "[green]pass", False: "[red]FAIL", None: "info"}[m.passed]
        value = "n/a" if m.value is None else f"{m.value:.4g}"
        table.add_row(m.name, value, "-" if m.threshold is None else f"{op} {m.threshold:g}", verdict)
    console = Console()
    console.print(table)
    console.print(f"output: {output or '(nothing published)'}\nreport: {report}\nwall time: {seconds:.1f} s")


def _parse_resize(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise InvalidInputError(f"--resize must look like HEIGHTxWIDTH, e.g. 64x64; got {text!r}") from exc
    return (h, w)


if __name__ == "__main__":
    typer.run(images_command)
