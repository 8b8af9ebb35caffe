"""`synthgate images`: the command line front end of the image flow, light to import.

Its options are declared here with typer alone, so `synthgate --help` lists the command without importing torch,
Prefect or the image stack; they load when the command runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer


def images_command(
    input: Annotated[
        str, typer.Option("--input", help="folder of class sub-folders, .npz, .parquet or dataset:digits")
    ],
    output: Annotated[Path, typer.Option("--output", help="Parquet file to publish (PNG bytes + label)")],
    model: Annotated[str, typer.Option("--model", help="vae, gan, autoencoder or augment")] = "vae",
    per_class: Annotated[int | None, typer.Option("--per-class", help="synthetic images per class")] = None,
    balance: Annotated[bool, typer.Option("--balance", help="fill every class up to the largest")] = False,
    seed: Annotated[int, typer.Option("--seed", help="seed for split, training and sampling")] = 0,
    epochs: Annotated[int | None, typer.Option("--epochs", help="training epochs (default: the model's)")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    resize: Annotated[str | None, typer.Option("--resize", help="HEIGHTxWIDTH to resize every image to")] = None,
    allow_flips: Annotated[bool, typer.Option("--allow-flips", help="augment: horizontal flips keep labels")] = False,
    report: Annotated[Path | None, typer.Option("--report", help="HTML report path (default: OUT.html)")] = None,
    epsilon: Annotated[
        float | None,
        typer.Option("--epsilon", help="DP budget: train with DP-SGD (vae, gan, autoencoder) spending at most this"),
    ] = None,
    delta: Annotated[
        float | None, typer.Option("--delta", help="with --epsilon: the DP delta (default 1/(10 n) for n images)")
    ] = None,
) -> None:
    """Synthesize or augment an image set; exit 0 published, 2 bad input, 3 refused by a gate."""
    from pydantic import ValidationError
    from rich.console import Console

    from synthgate.flows import images as flow  # the flow stack (torch, Prefect) loads only when the command runs
    from synthgate.flows.failures import quiet_failure_logs
    from synthgate.schemas.errors import GateRefusedError, InvalidInputError
    from synthgate.schemas.image import ImageRunRequest

    console, started = Console(stderr=True), time.perf_counter()
    try:
        request = ImageRunRequest(
            input=input, output=output, model=model, per_class=per_class, balance=balance, seed=seed, epochs=epochs,
            device=device, resize=flow._parse_resize(resize), allow_flips=allow_flips, report_path=report, epsilon=epsilon,
            delta=delta,
        )  # fmt: skip
        with quiet_failure_logs():  # the error is printed once, below; Prefect's run logs keep the traceback
            result = flow.synthesize_images(request)
    except ValidationError as exc:
        console.print(f"[red]bad request:[/red] {exc}")
        raise typer.Exit(flow.EXIT_BAD_INPUT) from exc
    except GateRefusedError as exc:
        flow._print_summary(exc.gate_result, status="REFUSED", output=None, report=Path(exc.report_path or ""),
                       seconds=time.perf_counter() - started)  # fmt: skip
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(flow.EXIT_REFUSED) from exc
    except InvalidInputError as exc:
        console.print(f"[red]bad input:[/red] {exc}")
        raise typer.Exit(flow.EXIT_BAD_INPUT) from exc
    flow._print_summary(result.gates, status="PUBLISHED", output=result.output, report=result.report_path,
                   seconds=time.perf_counter() - started)  # fmt: skip
