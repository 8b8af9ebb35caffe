"""Relational bench: fit + sample seconds, peak memory and every relational metric of `synthgate database`.

    python bench/relational.py --flights 50000 [--customers 300] [--seed 0]

Each database runs in its own child process, so its peak RSS is its own. Databases: the Faker-built shop
(customers / orders / order_items / payments, declared keys, in SQLite) and nycflights13 (flights sampled to
`--flights`, planes, airlines, airports). Memory is judged against the largest table's in-memory size: the run holds
every real table, the one table being modelled and the synthetic tables, never a product of tables.
SDV's HMASynthesizer is not run here yet: it needs SDV in its own venv (docs: /work/shared/NOTES-dependencies.md).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _source(name: str, folder: Path, *, customers: int, flights: int, seed: int) -> str:
    sys.path.insert(0, str(ROOT))
    from tests.databases import nycflights_folder, shop_sqlite, shop_tables

    if name == "shop":
        return shop_sqlite(folder / "shop.db", shop_tables(n_customers=customers, seed=seed))
    return str(nycflights_folder(folder / "flights", n_flights=flights, seed=seed))


def measure(name: str, *, customers: int, flights: int, seed: int) -> dict:
    """One database, in this process: seconds, peak RSS, largest table, and every gate's value."""
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import judge_database
    from synthgate.tasks.relations import check_database, read_database

    with tempfile.TemporaryDirectory() as folder:
        source = _source(name, Path(folder), customers=customers, flights=flights, seed=seed)
        db = check_database(read_database(source))
        start = time.perf_counter()
        syn = synthesize_database(db, seed=seed)
        seconds = time.perf_counter() - start
        gates = judge_database(syn, seed=seed)
    largest = max(frame.memory_usage(deep=True).sum() for frame in db.tables.values())
    row = {
        "database": name,
        "tables": len(db.tables),
        "rows": sum(len(f) for f in db.tables.values()),
        "fit_sample_s": round(seconds, 1),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "largest_table_mib": round(largest / 2**20, 1),
        "published": gates.passed,
    }
    for m in gates.metrics:
        row[m.name] = None if m.value is None else round(m.value, 3)
        if "random parents" in m.details:  # the no-link baseline beside a family's detection AUC
            row[f"{m.name} (random parents)"] = round(m.details["random parents"], 3)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--flights", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["shop", "flights"], help="run one database in this process (internal)")
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, customers=args.customers, flights=args.flights, seed=args.seed)))
        return
    rows = []
    for name in ("shop", "flights"):
        command = [sys.executable, __file__, "--only", name, "--customers", str(args.customers),
                   "--flights", str(args.flights), "--seed", str(args.seed)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1], indent=1))
    sys.path.insert(0, str(ROOT))
    from bench.results import record

    record(
        "relational",
        rows,
        title="synthgate database: fit + sample seconds, peak RSS and relational metrics",
        notes=["timings taken on a shared, loaded 2-core machine (niced)", "SDV HMASynthesizer not run: no SDV venv"],
    )


if __name__ == "__main__":
    main()
