"""Time the full gate metric set on a generated 100k-row, 30-column mixed table (bar: under 60 s on 2 CPU cores).

Run: `.venv/bin/python bench/metrics_speed.py [--rows 100000] [--seed 0]`. The real table is generated with joint
structure (correlated numbers, categories that depend on them, datetimes, missing values), split 80/20 into train and
holdout like a run does, and compared with a synthetic table of the same size (a noisy copy of fresh rows, so every
metric has something to measure). Prints seconds per metric and the total.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import record
from synthgate.schemas.table import infer_schema
from synthgate.tasks.gates import evaluate_gates
from synthgate.tasks.split import split_holdout


def make_table(n: int, seed: int) -> pd.DataFrame:
    """12 continuous, 3 integer, 2 datetime, 10 categorical and 3 boolean columns, with structure and missing values."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, 4))  # shared factors give the columns a joint structure
    data: dict[str, object] = {}
    for i in range(12):
        mix = rng.normal(size=4)
        values = latent @ mix + rng.normal(scale=0.5, size=n)
        if i % 3 == 0:
            values = np.exp(values / 3)  # skewed
        values = np.round(values * 100, 2)
        if i % 4 == 1:
            values[rng.random(n) < 0.05] = np.nan
        data[f"num_{i}"] = values
    for i in range(3):
        data[f"int_{i}"] = np.round(np.abs(latent[:, i]) * 40 + rng.integers(0, 30, n)).astype("int64")
    base = np.datetime64("2020-01-01")
    for i in range(2):
        days = np.clip((latent[:, i] * 200 + 700).astype(int), 0, 1500)
        stamps = pd.Series(base + days.astype("timedelta64[D]"))
        if i == 1:
            stamps[rng.random(n) < 0.03] = pd.NaT
        data[f"date_{i}"] = stamps
    for i in range(10):
        levels = [2, 3, 5, 8, 12, 20, 30, 50, 4, 6][i]
        score = latent[:, i % 4] + rng.normal(scale=0.7, size=n)
        codes = np.clip(((score + 3) / 6 * levels).astype(int), 0, levels - 1)
        labels = np.array([f"c{i}_{k}" for k in range(levels)], dtype=object)[codes]
        if i == 3:
            labels[rng.random(n) < 0.04] = None
        data[f"cat_{i}"] = labels
    for i in range(3):
        data[f"flag_{i}"] = latent[:, i] + rng.normal(scale=1.0, size=n) > 0
    return pd.DataFrame(data)


def noisy_copy(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Fresh rows with numbers shifted a little and 5% of categories swapped: close to real, not identical."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for col in out.columns:
        if col.startswith("num_"):
            out[col] = out[col] + rng.normal(scale=0.1 * np.nanstd(out[col]), size=len(out))
        elif col.startswith("cat_"):
            swap = rng.random(len(out)) < 0.05
            out.loc[swap, col] = rng.permutation(out[col].to_numpy())[swap]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    real = make_table(args.rows, args.seed)
    synthetic = noisy_copy(make_table(args.rows, args.seed + 1), args.seed)
    schema = infer_schema(real, name="bench")
    train, holdout = split_holdout(real, fraction=0.2, seed=args.seed)

    start = time.perf_counter()
    seconds: dict[str, float] = {}
    result = evaluate_gates(train, holdout, synthetic, schema, target="cat_2", seed=args.seed, timings=seconds)
    total = time.perf_counter() - start

    table = Table(
        title=f"gate metrics on {len(train)} train / {len(holdout)} holdout / {len(synthetic)} synthetic rows x {len(schema.modelled)} columns"
    )
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("value", justify="right")
    values = {m.name: m.value for m in result.metrics}
    for step, sec in seconds.items():
        value = values.get(step)
        table.add_row(step, f"{sec:.2f}", "" if value is None else f"{value:.3f}")
    for name in ("dcr_share_excess", "dcr_ratio", "nndr_ratio", "mia_auc"):
        table.add_row(f"  {name} (from nearest_records)", "", f"{values[name]:.3f}")
    table.add_row("[bold]total (evaluate_gates)[/]", f"[bold]{total:.2f}[/]", "")
    console = Console()
    console.print(table)
    for note in result.notes:
        console.print(f"note: {note}")
    console.print(("[green]under[/]" if total < 60 else "[red]OVER[/]") + " the 60 s bar")
    figures = [{"step": step, "seconds": round(sec, 2), "value": values.get(step)} for step, sec in seconds.items()]
    figures.append({"step": "total (evaluate_gates)", "seconds": round(total, 2), "value": None})
    title = f"Gate metrics speed: {len(train)} train / {len(holdout)} holdout / {len(synthetic)} synthetic rows"
    record("metrics_speed", figures, title=title)


if __name__ == "__main__":
    main()
