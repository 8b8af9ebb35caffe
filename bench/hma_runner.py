"""Fit and sample SDV's HMASynthesizer on a database; runs inside the SDV venv, never in synthgate's environment.

    /work/sdv-venv/bin/python bench/hma_runner.py --spec spec.json --out DIR

`spec.json` holds `{"tables": {name: CSV path}, "primary_keys": {name: column}, "relations": [[child, column,
parent, parent_column], ...]}`. Prints one JSON line: {"fit_s", "sample_s", "peak_rss_mib"} or {"refused": message}
when HMA does not accept the schema; the synthetic tables go to `DIR/<table>.csv` (CSV: the SDV venv has no Parquet engine).
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import pandas as pd


def metadata_for(tables: dict[str, pd.DataFrame], spec: dict):
    """SDV metadata from the data's own sdtypes, with our keys and relations (SDV's key inference switched off)."""
    from sdv.metadata import Metadata

    metadata = Metadata.detect_from_dataframes(tables, infer_keys=None)
    key_columns = {(t, c) for t, c in spec["primary_keys"].items()}
    key_columns |= {(child, column) for child, column, _, _ in spec["relations"]}
    for table, column in sorted(key_columns):
        metadata.update_column(table_name=table, column_name=column, sdtype="id")
    for table, column in spec["primary_keys"].items():
        metadata.set_primary_key(table_name=table, column_name=column)
    for child, column, parent, parent_column in spec["relations"]:
        metadata.add_relationship(
            parent_table_name=parent, child_table_name=child, parent_primary_key=parent_column,
            child_foreign_key=column,
        )  # fmt: skip
    return metadata


def _peak_rss_mib() -> int:
    """This process's own peak RSS: VmHWM belongs to the address space `exec` made, while `ru_maxrss` keeps the
    peak of the process that forked it (the bench, with every table loaded) across the exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    spec = json.loads(args.spec.read_text())
    tables = {name: pd.read_csv(path) for name, path in spec["tables"].items()}
    from sdv.multi_table import HMASynthesizer

    try:
        synth = HMASynthesizer(metadata_for(tables, spec))
        start = time.perf_counter()
        synth.fit(tables)
        fit_s = time.perf_counter() - start
    except Exception as exc:  # HMA's own refusals (schema too wide or deep, data it cannot model)
        print(json.dumps({"refused": f"{type(exc).__name__}: {exc}"[:600]}))
        return
    start = time.perf_counter()
    by_scale = getattr(synth, "sample_scale", None)  # SDV 2.0 renamed `sample(scale=)`
    out = by_scale(scale=1.0) if by_scale is not None else synth.sample(scale=1.0)
    sample_s = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    for name, frame in out.items():
        frame.to_csv(args.out / f"{name}.csv", index=False)
    peak = _peak_rss_mib()
    print(json.dumps({"fit_s": round(fit_s, 1), "sample_s": round(sample_s, 1), "peak_rss_mib": peak}))


if __name__ == "__main__":
    main()
