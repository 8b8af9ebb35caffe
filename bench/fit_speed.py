"""GMM fit and sampling speed on generated mixed tables (10k and 100k rows).

Run: `make bench` or `.venv/bin/python bench/fit_speed.py [--rows 10000 100000] [--columns 12]`.
Prints rows, columns, encoded width, chosen components, fit seconds and sample rows/s.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import record
from bench.tables import mixed_table
from synthgate.models.encoders import TableEncoder
from synthgate.models.gmm import GaussianMixture
from synthgate.schemas.table import infer_schema


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--columns", type=int, default=12)
    args = parser.parse_args()

    table = Table(title=f"GMM fit speed ({torch.get_num_threads()} torch threads, {torch.device('cpu')})")
    for col in ("rows", "columns", "encoded", "components", "encode s", "fit s", "sample rows/s", "decode rows/s"):
        table.add_column(col, justify="right")
    rows = []
    for n in args.rows:
        frame = mixed_table(n, args.columns)
        schema = infer_schema(frame)
        start = time.perf_counter()
        encoder = TableEncoder(schema).fit(frame)
        x = encoder.transform(frame)
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        model = GaussianMixture(spans=encoder.spans_).fit(x)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        raw = model.sample(n, generator=torch.Generator().manual_seed(0))
        sample_s = time.perf_counter() - start
        start = time.perf_counter()
        encoder.inverse_transform(raw)
        decode_s = time.perf_counter() - start
        table.add_row(
            f"{n:,}", str(frame.shape[1]), str(x.shape[1]), str(model.n_components_), f"{encode_s:.2f}",
            f"{fit_s:.2f}", f"{n / sample_s:,.0f}", f"{n / decode_s:,.0f}",
        )  # fmt: skip
        rows.append({
            "rows": n, "columns": frame.shape[1], "encoded": x.shape[1], "components": model.n_components_,
            "encode_s": round(encode_s, 2), "fit_s": round(fit_s, 2), "sample_rows_per_s": round(n / sample_s),
            "decode_rows_per_s": round(n / decode_s),
        })  # fmt: skip
    Console().print(table)
    record("fit_speed", rows, title="GMM fit speed (mixed_table)", notes=[f"{torch.get_num_threads()} torch threads"])


if __name__ == "__main__":
    main()
