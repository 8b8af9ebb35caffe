"""Where a command-line run's fixed cost goes, and whether the CLI trains as fast as the benches.

    .venv/bin/python bench/startup.py [--repeats 3] [--epochs 30] [--skip-fit] [--json out.json]

Prints one table (median of `--repeats` wall seconds each, fresh processes):
- `synthgate --help`, `import synthgate`, and importing the flow stack (`synthgate.flows.synthesize`);
- the temporary Prefect server: from start to its first healthy answer (`flows/server.py`);
- a penguins run (`synthgate run --input dataset:penguins`), end to end, and its flow steps as the output's metadata
  records them (ingest ... report, publish);
- a `vae` fit on `bench.tables.mixed_table(20_000, 12)` through the CLI against the same fit as `bench/vs_sdv.py`
  runs it (one thread, pinned; early stopping off in both), as training rows per second: the CLI fits on its
  training split, so seconds alone would not compare.

PREFECT_HOME is kept between runs (`.prefect-home` here, as the Makefile sets it): a user's second run finds the
database made. The figures depend on the machine and its load; say which when quoting them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TARGETS = {"help_s": 1.0, "penguins_run_s": 12.0, "cli_vs_bench_fit": 1.5}


def _env() -> dict[str, str]:
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "COLUMNS": "200"}
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect-home"))
    env.pop("PREFECT_API_URL", None)  # measure the temporary server, not someone's running one
    return env


def _wall(cmd: list[str], *, check: bool = True) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900, cwd=ROOT)
    if check and done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def _cpu_seconds(cmd: list[str]) -> float:
    """User + system CPU seconds of one run of `cmd` (a wall time on a busy machine mostly measures the queue)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    _wall(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def _median(cmd: list[str], repeats: int) -> float:
    return statistics.median(_wall(cmd) for _ in range(repeats))


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SERVER_START = """
import time; t = time.perf_counter()
from synthgate.flows.server import TemporaryServer
s = TemporaryServer(); s.wait_ready(120); print(time.perf_counter() - t); s.stop()
"""


def server_start(repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        done = subprocess.run(_python(SERVER_START), capture_output=True, text=True, env=_env(), check=True)
        runs.append(float(done.stdout.split()[-1]))
    return statistics.median(runs)


def penguins_run(repeats: int, tmp: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of the CLI penguins run, and the flow's step timings from the last output's metadata."""
    from synthgate.tasks.publish import read_metadata

    out = tmp / "penguins.parquet"
    cmd = [str(BIN / "synthgate"), "run", "--input", "dataset:penguins", "--output", str(out), "--no-cache"]
    wall = _median(cmd, repeats)
    return wall, read_metadata(out).timings


BENCH_FIT = """
import json, sys, time
sys.path.insert(0, {root!r})
from bench.vs_sdv import limit_threads
from bench.sdv_runner import warm_up
from bench.tables import mixed_table
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import build_model, normalization_for
from synthgate.schemas.table import infer_schema
limit_threads(1); warm_up("cpu")
frame = mixed_table(20_000, 12); schema = infer_schema(frame)
encoder = TableEncoder(schema, normalization=normalization_for("vae")).fit(frame); x = encoder.transform(frame)
options = {{"epochs": {epochs}, "patience": None, "val_fraction": 0.0}}
model = build_model("vae", spans=encoder.spans_, device="cpu", options=options)
start = time.perf_counter(); model.fit(x); seconds = time.perf_counter() - start
print(json.dumps({{"rows": len(frame), "seconds": seconds}}))
"""


def fit_speed(epochs: int, tmp: Path) -> dict[str, float]:
    """Training rows per second of the same vae fit: as `bench/vs_sdv.py` runs it, and through `synthgate run`."""
    import yaml

    sys.path.insert(0, str(ROOT))
    from bench.tables import mixed_table

    done = subprocess.run(
        _python(BENCH_FIT.format(root=str(ROOT), epochs=epochs)), capture_output=True, text=True, env=_env(), check=True
    )
    bench = json.loads(done.stdout.strip().splitlines()[-1])
    table, config, out = tmp / "mixed.parquet", tmp / "run.yaml", tmp / "mixed-out.parquet"
    mixed_table(20_000, 12).to_parquet(table)
    options = {"epochs": epochs, "patience": None, "val_fraction": 0.0}
    config.write_text(yaml.safe_dump({"model": "vae", "model_options": options}))
    cmd = [str(BIN / "synthgate"), "run", "--input", str(table), "--output", str(out), "--config", str(config)]
    cmd += ["--no-cache"]  # a stored model from an earlier bench would skip the fit
    done = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800, cwd=ROOT)
    # The fit's own log line; a refusal (exit 3) trained all the same.
    pattern = r"train:\s+vae\s+fitted\s+on\s+(\d+)\s+rows\s+x\s+\d+\s+features\s+in\s+([\d.]+)\s+s"
    fitted = re.search(pattern, done.stdout + done.stderr)  # \s+: the log console may wrap the line
    if fitted is None:
        raise RuntimeError(f"the CLI vae run did not fit (exit {done.returncode}):\n{done.stderr[-3000:]}")
    bench_rate = bench["rows"] * epochs / bench["seconds"]
    cli_rate = int(fitted[1]) * epochs / float(fitted[2])
    return {
        "bench_rows_per_s": round(bench_rate),
        "cli_rows_per_s": round(cli_rate),
        "cli_vs_bench_fit": round(bench_rate / cli_rate, 2),
    }


def _print(name: str, value: float) -> None:
    target = TARGETS.get(name)
    mark = "" if target is None else f"{'<=' if value <= target else 'MISSED'} {target:g}"
    shown = f"{value:10.3f}" if isinstance(value, float) else f"{value:10}"
    print(f"{name:34} {shown} {mark:>8}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--skip-fit", action="store_true", help="leave out the 20k-row vae fit comparison")
    parser.add_argument("--only-fit", action="store_true", help="only the 20k-row vae fit comparison")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    rows: dict[str, float] = {}

    def record(name: str, value: float) -> None:
        rows[name] = value
        _print(name, value)

    print(f"{'measure':34} {'value':>10} {'target':>8}", flush=True)
    if not args.only_fit:
        record("help_s", _median([str(BIN / "synthgate"), "--help"], args.repeats))
        record("help_cpu_s", _cpu_seconds([str(BIN / "synthgate"), "--help"]))  # what load cannot inflate much
        record("import_synthgate_s", _median(_python("import synthgate"), args.repeats))
        record("import_flow_stack_s", _median(_python("import synthgate.flows.synthesize"), args.repeats))
        record("prefect_server_start_s", server_start(args.repeats))
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_fit:
            wall, steps = penguins_run(args.repeats, Path(tmp))
            record("penguins_run_s", wall)
            for step, seconds in steps.items():
                record(f"flow.{step}_s", float(seconds))
        if not args.skip_fit:
            for name, value in fit_speed(args.epochs, Path(tmp)).items():
                record(name, value)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    sys.path.insert(0, str(ROOT))
    from bench.results import record as write_record

    write_record(
        "startup",
        record_rows(rows),
        title="A command-line run's fixed cost (median wall seconds, fresh processes) and the CLI's fit speed",
        notes=[f"median of {args.repeats} runs each; the fit: vae, 20k x 12 mixed table, {args.epochs} epochs"],
    )


def record_rows(figures: dict[str, float]) -> list[dict]:
    """The figures as the performance page's rows: measure, value, target and whether it is met."""
    rows = []
    for name, value in figures.items():
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if value <= target else "no")
        rows.append({"measure": name, "value": round(float(value), 3), "target": target or "", "met": met})
    return rows


if __name__ == "__main__":
    main()
