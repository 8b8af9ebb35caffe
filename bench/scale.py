"""How fit, sample and metric time and peak memory grow with rows and columns, for every model and SDV's peers.

Run: `.venv/bin/python bench/scale.py [--rows 10000 100000 1000000] [--columns 10 30 100] [--models gmm vae gan
autoencoder] [--epochs 5] [--sdv gaussian_copula tvae ctgan] [--sdv-max-rows 100000]`.

Each (model, rows, columns) runs in a fresh child process, so its peak RSS (`ru_maxrss`) is its own. The table is
`bench.tables.mixed_table` (two thirds continuous with missing values, one third categorical). Columns: fit, sample
(in rounds of 65,536 rows, as the flow samples) and metric (column shapes + pair trends against fresh real rows,
`--metric-rows`, default 50k) seconds, peak RSS, and the fit-time growth factor per 10x rows (1 = constant, 10 =
linear), by wall time and by the process's CPU time (steadier on a shared machine, whose wall times drift by up to a
third within minutes). SDV runs through `bench/sdv_runner.py` in /work/sdv-venv at the same epoch count, only up to
`--sdv-max-rows` (CTGAN/TVAE at 1M rows take hours on 2 cores), and is shown as the ratio SDV seconds / ours for the
same table. `--device cuda` puts ours, and SDV's TVAE/CTGAN, on the GPU.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

METRIC_ROWS = 50_000
SAMPLE_ROWS = 65_536  # rows drawn and decoded per round, the flow's `tasks.sample.BATCH_ROWS`


def one(model: str, rows: int, columns: int, epochs: int, device: str = "auto", metric_rows: int = METRIC_ROWS) -> dict:
    """Fit, sample and score one model on one generated table (in this process); returns timings and peak RSS."""
    import pandas as pd
    import torch

    from bench.vs_sdv import limit_threads

    limit_threads(1)  # SDV's peers run with one thread in every pool too (`run_sdv(..., threads=1)`)

    from bench.sdv_runner import warm_up
    from bench.tables import train_and_fresh
    from bench.vs_sdv import column_shapes, pair_trends
    from synthgate.models.base import make_generator, resolve_device
    from synthgate.models.encoders import TableEncoder
    from synthgate.models.registry import build_model, model_names
    from synthgate.schemas.table import infer_schema

    frame, fresh = train_and_fresh(rows, columns, min(rows, metric_rows))
    warm_up(str(resolve_device(device)))  # CUDA's context and cuBLAS start-up are paid before the clock, as for SDV
    model_names()  # model modules are imported before the clock, as the SDV runner imports SDV
    schema = infer_schema(frame)  # outside the clock, as the SDV runner detects its metadata before its clock
    start, cpu_start = time.perf_counter(), time.process_time()
    encoder = TableEncoder(schema, normalization="standard" if model == "gmm" else "mode").fit(frame)
    x = encoder.transform(frame)
    options: dict = {} if model == "gmm" else {"epochs": epochs}
    fitted = build_model(model, spans=encoder.spans_, device=device, options=options).fit(x)
    fit_s, fit_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    start = time.perf_counter()
    gen = make_generator(0, getattr(fitted, "device_", None) or "cpu")
    parts = [  # in rounds, as the flow samples (tasks.sample.BATCH_ROWS): memory bounded by a round, not by `rows`
        encoder.inverse_transform(fitted.sample(min(SAMPLE_ROWS, rows - done), generator=gen))
        for done in range(0, rows, SAMPLE_ROWS)
    ]
    synthetic = pd.concat(parts, ignore_index=True)
    sample_s = time.perf_counter() - start
    start = time.perf_counter()
    shapes = column_shapes(fresh, synthetic.head(metric_rows))
    trends = pair_trends(fresh, synthetic.head(metric_rows))
    metric_s = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux reports KiB)
    return {
        "fit_s": fit_s, "fit_cpu_s": fit_cpu_s, "sample_s": sample_s, "metric_s": metric_s, "peak_mib": peak,
        "shapes": shapes, "trends": trends, "threads": torch.get_num_threads(), "device": str(fitted.device_),
    }  # fmt: skip


def sdv(model: str, rows: int, columns: int, epochs: int, python: str, *, gpu: bool, metric_rows: int) -> float | None:
    from bench.tables import train_and_fresh
    from bench.vs_sdv import run_sdv

    frame, _ = train_and_fresh(rows, columns, min(rows, metric_rows))  # the very rows our models train on
    try:
        seconds, _, _ = run_sdv(model, frame, epochs, python, 1, gpu)
    except Exception as exc:  # a peer that fails is reported, not fatal
        print(f"SDV {model} at {rows}x{columns} failed: {str(exc)[-300:]}", file=sys.stderr)
        return None
    print(f"SDV {model} at {rows}x{columns}: {seconds:.1f} s fit + sample", flush=True)  # kept if the bench is cut
    return seconds


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--columns", type=int, nargs="+", default=[10, 30, 100])
    parser.add_argument("--models", nargs="+", default=["gmm", "vae", "gan", "autoencoder"])
    parser.add_argument("--epochs", type=int, default=5, help="neural models and SDV's TVAE/CTGAN")
    parser.add_argument("--sdv", nargs="*", default=["gaussian_copula", "tvae", "ctgan"])
    parser.add_argument("--sdv-max-rows", type=int, default=100_000)
    parser.add_argument("--sdv-python", default="/work/sdv-venv/bin/python")
    parser.add_argument(
        "--device", default="auto", help="ours (auto: CUDA when present); with CUDA SDV's TVAE/CTGAN too"
    )
    parser.add_argument("--metric-rows", type=int, default=METRIC_ROWS, help="rows scored (the scorers are slow)")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "ROWS", "COLUMNS", "EPOCHS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        model, rows, columns, epochs = args.one
        print(json.dumps(one(model, int(rows), int(columns), int(epochs), args.device, args.metric_rows)))
        return

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"scale: mixed_table, {args.epochs} epochs for neural models and SDV, device {args.device}")
    for col in ("model", "rows", "cols", "fit s", "x per 10x rows", "fit CPU s", "CPU x per 10x", "sample s",
                "metric s", "peak MiB", "shapes", "trends", *[f"{m} / ours" for m in args.sdv]):  # fmt: skip
        table.add_column(col, justify="right")
    gpu = args.device.startswith("cuda") or (args.device == "auto" and _cuda_available())
    peer_seconds: dict[tuple[str, int, int], float | None] = {}  # each peer runs once per table, not once per model
    figures = []
    for model in args.models:
        for columns in args.columns:
            previous: float | None = None
            previous_cpu: float | None = None
            for rows in sorted(args.rows):
                cmd = [sys.executable, __file__, "--one", model, str(rows), str(columns), str(args.epochs)]
                cmd += ["--device", args.device, "--metric-rows", str(args.metric_rows)]
                proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if proc.returncode:
                    table.add_row(model, f"{rows:,}", str(columns), "failed: " + proc.stderr.strip()[-80:])
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                growth = f"{r['fit_s'] / previous:.1f}" if previous else "-"
                cpu_growth = f"{r['fit_cpu_s'] / previous_cpu:.1f}" if previous_cpu else "-"
                previous, previous_cpu = r["fit_s"], r["fit_cpu_s"]
                ours = r["fit_s"] + r["sample_s"]
                peers = []
                for name in args.sdv:
                    key = (name, rows, columns)
                    if key not in peer_seconds:
                        run = rows <= args.sdv_max_rows
                        peer_seconds[key] = (
                            sdv(
                                name, rows, columns, args.epochs, args.sdv_python, gpu=gpu, metric_rows=args.metric_rows
                            )
                            if run
                            else None
                        )
                    s = peer_seconds[key]
                    peers.append(f"{s / ours:.1f}" if s else "not run")
                table.add_row(
                    model, f"{rows:,}", str(columns), f"{r['fit_s']:.1f}", growth, f"{r['fit_cpu_s']:.1f}", cpu_growth,
                    f"{r['sample_s']:.1f}", f"{r['metric_s']:.1f}", f"{r['peak_mib']:.0f}", f"{r['shapes']:.3f}",
                    f"{r['trends']:.3f}", *peers,
                )  # fmt: skip
                Console(width=200).print(f"done {model} {rows}x{columns}: {r}")
                figures.append({"model": model, "rows": rows, "columns": columns, "fit_s": round(r["fit_s"], 1),
                                "fit_cpu_s": round(r["fit_cpu_s"], 1), "sample_s": round(r["sample_s"], 1),
                                "peak_mib": round(r["peak_mib"]), "shapes": round(r["shapes"], 3),
                                "trends": round(r["trends"], 3),
                                **{f"{n}_x_ours": p for n, p in zip(args.sdv, peers, strict=True)}})  # fmt: skip
    Console(width=200).print(table)  # wide: piped output would otherwise be cut to 80 columns
    from bench.results import record

    title = f"Scale: mixed_table, {args.epochs} epochs for neural models and SDV"
    record("scale", figures, title=title, device="cuda" if gpu else "cpu", notes=["x_ours: SDV seconds / ours"])


if __name__ == "__main__":
    main()
