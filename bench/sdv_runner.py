"""Fit and sample one SDV single-table synthesizer; runs inside the SDV venv, never in synthgate's environment.

    /work/sdv-venv/bin/python bench/sdv_runner.py --data in.csv --model tvae --epochs 300 --rows 1000 --out out.csv \
        [--gpu] [--seed 0] [--max-seconds 1800]

Prints one JSON line: {"status": "ok", "fit_s", "sample_s", "cpu_s", "peak_rss_mb"} (cpu_s: process CPU seconds of
fit + sample; peak_rss_mb: this process's peak resident memory), or {"status": "timeout", "fit_s", "max_seconds"}
(exit code 3) when the fit ran past `--max-seconds`. `--epochs` defaults to 300, SDV's own default for TVAE and CTGAN.
SDV 2.0's single-table API takes and returns `{table_name: DataFrame}`; both shapes are tried so the runner works
across 1.x and 2.x.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys
import time

import numpy as np
import pandas as pd
import torch

TABLE = "table"
TIMEOUT_EXIT = 3


class FitTimeout(Exception):
    """The fit ran past `--max-seconds`."""


def warm_up(device: str = "cpu") -> None:
    """Pay torch's one-off lazy imports before the clock starts, as `bench/vs_sdv.py` does for our models.

    The first `torch.optim` optimizer imports `torch._dynamo` (seconds on a loaded machine), whichever library builds
    it; left inside the timed region it would swamp a 50-epoch fit on a small table for SDV and for us alike.
    On CUDA it also pays the context and cuBLAS start-up (about a second), which no fit should be charged.
    """
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)).to(device)
    opt = torch.optim.Adam(net.parameters())
    net(torch.randn(16, 4, device=device)).pow(2).mean().backward()  # the first backward also pays a one-off set-up
    opt.step()
    if device != "cpu":
        torch.cuda.synchronize()


WARM_UP_ROWS = 200


def pin_to_cores(threads: int) -> None:
    """Let this process, and every process it starts, run on `threads` cores only.

    Thread pools are capped by the environment and by `torch.set_num_threads`, but not process pools: CTGAN's
    `DataTransformer` (TVAE's and CTGAN's preprocessing) transforms its columns in joblib worker processes on every
    core. On the 2-core machine, at 10 epochs on the 20k x 12 table, the runner took 29.9 s with 22.8 s of its own
    CPU and 119% of a core over its life; pinned to one core its workers collapse to one in-process pass, 33.7 s
    wall and 33.9 s CPU. Our models run on one core with the same pinning (`bench/vs_sdv.py`).
    """
    if not hasattr(os, "sched_setaffinity"):  # Linux only; elsewhere the thread limits are all there is
        return
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, allowed[: max(1, threads)])


def fit(synth, frame: pd.DataFrame) -> None:
    """SDV 2.0's single-table `fit` takes `{table_name: DataFrame}`, 1.x a DataFrame."""
    try:
        synth.fit({TABLE: frame})
    except (TypeError, AttributeError, ValueError):
        synth.fit(frame)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", choices=["gaussian_copula", "tvae", "ctgan"], required=True)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true", help="TVAE/CTGAN on CUDA (SDV's enable_gpu)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=0.0, help="stop a fit that runs longer (0: never)")
    args = parser.parse_args()
    pin_to_cores(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    from sdv.metadata import Metadata
    from sdv.single_table import CTGANSynthesizer, GaussianCopulaSynthesizer, TVAESynthesizer

    warm_up("cuda" if args.gpu else "cpu")

    frame = pd.read_csv(args.data)
    metadata = Metadata.detect_from_dataframes({TABLE: frame})

    def build(epochs: int):
        if args.model == "gaussian_copula":
            return GaussianCopulaSynthesizer(metadata)
        kind = TVAESynthesizer if args.model == "tvae" else CTGANSynthesizer
        return kind(metadata, epochs=epochs, enable_gpu=args.gpu)

    # A first fit in a process pays one-off costs (lazy imports inside SDV and RDT, first calls of torch's kernels):
    # one epoch on a slice before the clock, as `bench/vs_sdv.py` warms our models up, then the seed as it was.
    fit(build(1), frame.head(WARM_UP_ROWS))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)  # the copula's and RDT's draws come from numpy's global generator
    synth = build(args.epochs)

    def expire(*_):
        raise FitTimeout

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(args.max_seconds, 0.0))
    start, cpu = time.perf_counter(), time.process_time()
    try:
        fit(synth, frame)
    except FitTimeout:
        seconds = round(time.perf_counter() - start, 2)
        print(json.dumps({"status": "timeout", "fit_s": seconds, "max_seconds": args.max_seconds}))
        sys.exit(TIMEOUT_EXIT)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    out = synth.sample(args.rows)
    sample_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu
    if isinstance(out, dict):
        out = out[TABLE]
    out.to_csv(args.out, index=False)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    report = {"status": "ok", "fit_s": fit_s, "sample_s": sample_s, "cpu_s": cpu_s, "peak_rss_mb": round(peak_mb, 1)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
