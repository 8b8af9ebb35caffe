"""End to end at scale: a generated table through the real `synthgate run` command, ingest to published Parquet.

Run: `.venv/bin/python bench/e2e.py [--rows 1000000] [--columns 30] [--workdir /tmp/e2e] [-- extra run options]`.

The table is `bench.tables.mixed_table(rows, columns)` written to Parquet first (not timed). The command runs in a child
process, exactly as a user runs it (Prefect's temporary local server included), with its log streamed to the terminal;
the bench prints the wall time, the peak RSS of the command and its children, the verdict, each step's seconds from
the published metadata, and the gate and risk scores, and writes them to `bench/results/e2e.json`. The bar: 1M rows x
30 columns within 20 minutes on a 2-core CPU, within 10 minutes on one GPU.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/synthgate-e2e"))
    parser.add_argument("extra", nargs="*", help="more `synthgate run` options, after --")
    args = parser.parse_args()

    from bench.results import record
    from bench.tables import mixed_table

    args.workdir.mkdir(parents=True, exist_ok=True)
    source = args.workdir / f"mixed_{args.rows}x{args.columns}.parquet"
    output = args.workdir / "out.parquet"
    if not source.exists():
        mixed_table(args.rows, args.columns).to_parquet(source, index=False)
    output.unlink(missing_ok=True)

    cmd = [
        sys.executable,
        "-m",
        "synthgate.flows.cli",
        "run",
        "--input",
        str(source),
        "--output",
        str(output),
        "--no-cache",
    ]
    cmd += args.extra
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    code = subprocess.run(cmd, check=False).returncode
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(f"\n{args.rows:,} rows x {args.columns} columns: exit {code}, wall {wall:.0f} s, peak RSS {peak_mib:.0f} MiB")
    if not output.exists():
        print("nothing published")
        return
    from synthgate.tasks.publish import read_metadata

    meta = read_metadata(output)
    print(f"verdict {meta.verdict}, model {meta.model}, {meta.n_rows_output:,} rows written")
    print("steps (s): " + ", ".join(f"{k} {v:.1f}" for k, v in meta.timings.items()))
    print("scores: " + ", ".join(f"{m.name} {m.value:.3f}" for m in meta.gates.metrics))
    for key in ("risks", "device"):
        if key in (meta.model_extra or {}):
            print(f"{key}: {meta.model_extra[key]}")
    row = {"rows": args.rows, "columns": args.columns, "verdict": meta.verdict, "model": meta.model,
           "device": meta.device, "wall_s": round(wall), "peak_rss_mib": round(peak_mib)}  # fmt: skip
    row |= {f"{k}_s": round(v, 1) for k, v in meta.timings.items()}
    row |= {m.name: round(m.value, 3) for m in meta.gates.metrics if m.value is not None}
    record("e2e", [row], title="End to end: `synthgate run` on a generated mixed table", device=meta.device or "cpu")


if __name__ == "__main__":
    main()
