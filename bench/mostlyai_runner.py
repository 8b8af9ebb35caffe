"""Train MOSTLY AI's TabularARGN on one table and sample it, locally; runs inside the MOSTLY AI venv, never in ours.

    /work/mostlyai-venv/bin/python bench/mostlyai_runner.py --data in.csv --rows N --out out.csv [--seed 0] \
        [--max-seconds 3600] [--threads 0] [--max-training-minutes M]

Prints one JSON line: {"status": "ok", "fit_s", "sample_s", "peak_rss_mb", "threads"}, or {"status": "timeout",
"fit_s", "max_seconds"} (exit code 3) when training and sampling ran past `--max-seconds` (the jobs are then killed).

The SDK's local mode (`MostlyAI(local=True)`) serves its API from a thread of this process and runs each training and
generation job in a child process; fit_s is generator create + training, sample_s is synthetic dataset create +
generation + reading the rows, both with the SDK's start-up (the local server) excluded, as imports are for every
model in the bench. peak_rss_mb is the largest of this process and its jobs. TabularARGN runs with the SDK's defaults
(model MOSTLY_AI/Medium, up to 100 epochs with early stopping, value protection on, flexible generation on); only
the model and data quality reports are turned off, since they evaluate and do not train or sample (synthgate's gates
are not timed either). `--threads 0` leaves the cores as the library finds them (all of this process's).
`--max-training-minutes` sets TabularARGN's own `max_training_time` (default 14400 minutes), which stops training
early and still yields a model: a cap for a machine too slow to train to convergence, reported in the JSON line.

The venv (mostlyai[local] 6.2.0 needs torch >= 2.13, < 2.14; torch first, so that pip keeps the local CPU wheel;
the engine's torchvision/torchaudio are CUDA builds that fail to load beside torch+cpu, and the tabular path never
imports them):

    python3.11 -m venv /work/mostlyai-venv
    /work/mostlyai-venv/bin/pip install torch==2.13.0
    /work/mostlyai-venv/bin/pip install "mostlyai[local]==6.2.0"
    /work/mostlyai-venv/bin/pip uninstall -y torchvision torchaudio
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import sys
import tempfile
import time

TIMEOUT_EXIT = 3
TABLE = "data"


class RunTimeout(Exception):
    """Training and sampling ran past `--max-seconds`."""


def pin_to_cores(threads: int) -> None:
    """Run on `threads` cores only (0: all of them); the SDK's job processes inherit the affinity."""
    if threads <= 0 or not hasattr(os, "sched_setaffinity"):
        return
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:threads])


def reap_children(timeout: float = 30.0) -> None:
    """Wait for the SDK's finished job processes, so their peak RSS counts in RUSAGE_CHILDREN."""
    import psutil

    psutil.wait_procs(psutil.Process().children(), timeout=timeout)  # waiting on a child reaps it


def kill_children() -> None:
    """Stop the SDK's job processes after a timeout: they would otherwise train on after this process exits."""
    import psutil

    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def peak_rss_mb() -> float:
    """The largest resident set of this process and of its reaped children (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    jobs = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, jobs) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--threads", type=int, default=0, help="cores to run on; 0: all (the library's default)")
    parser.add_argument("--max-training-minutes", type=float, default=None, help="TabularARGN's max_training_time")
    args = parser.parse_args()
    pin_to_cores(args.threads)

    import pandas as pd
    from mostlyai.sdk import MostlyAI

    frame = pd.read_csv(args.data)
    with tempfile.TemporaryDirectory(prefix="mostlyai-home-") as home:
        mostly = MostlyAI(local=True, local_dir=home, quiet=True)

        def expire(*_):
            raise RunTimeout

        model_config: dict = {"enable_model_report": False}
        if args.max_training_minutes is not None:
            model_config["max_training_time"] = args.max_training_minutes

        signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, max(args.max_seconds, 0.0))
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(sys.stderr):  # the SDK's own prints; the JSON line is stdout's only line
                generator = mostly.generators.create(
                    {
                        "name": "realism",
                        "random_state": args.seed,
                        "tables": [
                            {
                                "name": TABLE,
                                "data": frame,
                                "tabular_model_configuration": model_config,
                            }
                        ],
                    }
                )
                generator.training.start()
                generator.training.wait(progress_bar=False, interval=0.5)
                if generator.training_status != "DONE":
                    raise RuntimeError(f"training ended {generator.training_status}")
                fit_s = time.perf_counter() - start
                start = time.perf_counter()
                dataset = mostly.synthetic_datasets.create(
                    {
                        "generator_id": generator.id,
                        "random_state": args.seed,
                        "tables": [
                            {"name": TABLE, "configuration": {"sample_size": args.rows, "enable_data_report": False}}
                        ],
                    }
                )
                dataset.generation.start()
                dataset.generation.wait(progress_bar=False, interval=0.5)
                out = dataset.data()
                sample_s = time.perf_counter() - start
        except RunTimeout:
            kill_children()
            print(json.dumps({"status": "timeout", "fit_s": args.max_seconds, "max_seconds": args.max_seconds}))
            sys.stdout.flush()
            os._exit(TIMEOUT_EXIT)  # the SDK's server thread would keep a normal exit waiting
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        reap_children()
    out.to_csv(args.out, index=False)
    report = {"status": "ok", "fit_s": fit_s, "sample_s": sample_s, "peak_rss_mb": peak_rss_mb()}
    report["max_training_minutes"] = args.max_training_minutes
    print(json.dumps(report | {"threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}))
    sys.stdout.flush()
    os._exit(0)  # the SDK's local server thread does not stop on its own


if __name__ == "__main__":
    main()
