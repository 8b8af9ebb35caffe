"""Fit the requested generative model on the encoded training rows (the GPU task)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import Tensor

from synthgate.models.base import GenerativeModel, resolve_device
from synthgate.models.encoders.table import Span
from synthgate.models.registry import build_model, config_class
from synthgate.models.training import Progress
from synthgate.tasks.stop import stoppable

if TYPE_CHECKING:
    from rich.console import Console

logger = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class FitResult:
    model: GenerativeModel
    name: str
    seconds: float
    device: str


@contextlib.contextmanager
def progress_bar(name: str, *, console: Console | None = None) -> Iterator[Callable[[Progress], None]]:
    """A per-epoch callback that drives one live rich progress bar, on stderr when it is a terminal.

    The log lines (every tenth of the epochs, `models.training.log_epoch`) are what Prefect's logs keep; the bar is for
    a person watching a terminal, so it is drawn only there (or on `console`) and is gone when the fit ends.
    """
    if console is None and not sys.stderr.isatty():
        yield lambda report: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as Bar

    columns = (
        TextColumn(f"training {name}"), BarColumn(), MofNCompleteColumn(), TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]}"), TimeRemainingColumn(),
    )  # fmt: skip
    with Bar(*columns, console=console or Console(stderr=True), transient=True) as bar:
        task_id = None

        def update(report: Progress) -> None:
            nonlocal task_id
            if task_id is None:
                task_id = bar.add_task(name, total=report.n_epochs, loss="", speed="")
            speed = f"{report.rows_per_s:,.0f} rows/s"
            bar.update(task_id, completed=report.epoch, loss=f"{report.loss:.4f}", speed=speed)

        yield update


def fit_model(
    encoded: Tensor,
    *,
    model: str,
    spans: list[Span],
    device: str = "auto",
    options: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Callable[[Progress], None] | None = None,
) -> FitResult:
    """Build and fit model `model`; plain Python, so tests call it without Prefect.

    Args:
        progress: called after every training epoch with a `Progress` besides the terminal's progress bar (a
            cancellation check may raise from it to stop the fit).
    """
    torch_device = resolve_device(device)
    options = dict(options or {})
    if "seed" in config_class(model).__dataclass_fields__:
        options.setdefault("seed", seed)
    torch.manual_seed(seed)  # weight initialisation of neural models
    instance = build_model(model, spans=spans, device=torch_device, options=options)
    start = time.perf_counter()
    with progress_bar(model) as bar:

        def each_epoch(report: Progress) -> None:
            bar(report)
            if progress is not None:
                progress(report)

        instance.fit(encoded, progress=stoppable(each_epoch))  # a stopped run ends at the next epoch
    seconds = time.perf_counter() - start
    logger.info(
        "train: %s fitted on %d rows x %d features in %.2f s (%s)", model, *encoded.shape, seconds, torch_device
    )
    return FitResult(model=instance, name=model, seconds=seconds, device=str(torch_device))


GPU_TAG = "gpu"  # a tag concurrency limit on it (`synthgate setup --gpu-slots N`) caps GPU trainings at once


def on_device(task_: T, device: str | None) -> T:
    """`task_` tagged `gpu` when it will train on CUDA, else as it is.

    A tagged task asks the Prefect server for a concurrency slot before it starts, a synchronous database write;
    on the SQLite server of a local run it sometimes stalled for about 2 s behind the run's own log and event
    writes, and a CPU fit of a small table takes a tenth of that. Only GPU trainings need the cap
    (docs/decisions.md#gpu-tag).
    """
    if resolve_device(device).type != "cuda":
        return task_
    return task_.with_options(tags={*task_.tags, GPU_TAG})


fit_model_task = task(name="fit-model", cache_policy=NO_CACHE)(fit_model)
