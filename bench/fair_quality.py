"""Fair-quality speed: wall time for each model to reach SDV TVAE's (300 epochs) column-shapes and pair-trends scores.

Run: `.venv/bin/python bench/fair_quality.py [--rows 20000] [--columns 12] [--epochs 10 30 100 300]` (slow: a bench,
not a test). SDV's TVAE runs once at 300 epochs through `bench/sdv_runner.py` and sets the bar; then each of our
models is fitted at growing budgets (epochs for the neural models; the GMM has one budget, its BIC search) until both
of its scores are at least the bar. The table shows, per model, the first budget that reached it and its wall time
(fit + sample), or "not reached" with its best scores. The vae and the autoencoder use their own early stopping (10%
of the rows held out, patience 30 epochs), so a budget of N epochs may stop sooner: the "epochs run" column says
where. The gan has no validation loss and runs every epoch of its budget.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from rich.console import Console
    from rich.table import Table

    from bench.sdv_runner import warm_up
    from bench.tables import train_and_fresh
    from bench.vs_sdv import column_shapes, limit_threads, pair_trends, run_ours, run_sdv
    from synthgate.models.registry import model_names

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--columns", type=int, default=12)
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 30, 100, 300])
    parser.add_argument("--models", nargs="+", default=["gmm", "vae", "gan", "autoencoder"])
    parser.add_argument("--sdv-python", default="/work/sdv-venv/bin/python")
    args = parser.parse_args()

    limit_threads(1)  # the SDV runner gets one thread in every pool too (`run_sdv(..., 1)`)
    warm_up("cpu")  # torch's one-off lazy imports before any clock, as the SDV runner does (`bench/vs_sdv.py`)
    model_names()
    frame, fresh = train_and_fresh(args.rows, args.columns, args.rows)  # scored on unseen rows, for SDV and us alike
    tvae_s, _, tvae_syn = run_sdv("tvae", frame, 300, args.sdv_python, 1)
    bar = (column_shapes(fresh, tvae_syn), pair_trends(fresh, tvae_syn))
    Console().print(f"SDV TVAE 300 epochs: {tvae_s:.1f} s, shapes {bar[0]:.3f}, trends {bar[1]:.3f}")

    table = Table(title=f"time to TVAE-300 quality on mixed_table {args.rows}x{args.columns} (TVAE: {tvae_s:.0f} s)")
    for col in ("model", "budget", "epochs run", "seconds", "shapes", "trends", "reached", "TVAE s / ours"):
        table.add_column(col, justify="right")
    for model in args.models:
        budgets = [0] if model == "gmm" else args.epochs
        for epochs in budgets:
            spent, _, synthetic, epochs_run = run_ours(model, frame, epochs, early_stopping=True)
            scores = (column_shapes(fresh, synthetic), pair_trends(fresh, synthetic))
            reached = scores[0] >= bar[0] and scores[1] >= bar[1]
            Console().print(
                f"{model} {epochs} epochs (ran {epochs_run}): {spent:.1f} s, {scores[0]:.3f} / {scores[1]:.3f}"
            )
            if reached or epochs == budgets[-1]:
                table.add_row(
                    model, "BIC" if model == "gmm" else f"{epochs} epochs", str(epochs_run or "-"), f"{spent:.1f}",
                    f"{scores[0]:.3f}", f"{scores[1]:.3f}", "yes" if reached else "not reached", f"{tvae_s / spent:.1f}",
                )  # fmt: skip
                break
    Console(width=200).print(table)  # wide: piped output would otherwise be cut to 80 columns


if __name__ == "__main__":
    main()
