"""Fit and sample smartnoise-synth's MST or AIM; runs inside the smartnoise venv, never in synthgate's environment.

    /work/smartnoise-venv/bin/python bench/smartnoise_runner.py --data in.csv --synth mst|aim --epsilon E --rows N \
        --out out.csv [--categorical a,b] [--continuous x,y] [--bounds '{"x": [0, 10]}'] [--delta D] \
        [--preprocessor-eps share] [--bins 10] [--max-seconds 600]

Prints one JSON line: {"status": "ok", "fit_s", "sample_s", "epsilon_spent", "epsilon_preprocessor", "delta"}, or
{"status": "timeout", "fit_s", "max_seconds"} (exit code 3) when the fit ran past `--max-seconds`. The library's own
prints (AIM prints its sigma) go to stderr, so the JSON line is stdout's only line.

Public domain, as synthgate's bench assumes: a continuous column with `--bounds` gets smartnoise's `BinTransformer`
with those bounds (no budget spent on them); without bounds its bounds are found under DP with a share of the budget
(`--preprocessor-eps`, subtracted from `--epsilon` by the library). Categorical columns get `LabelTransformer`, which
reads its categories from the data without spending budget (smartnoise has no way to pass public categories); that
matches synthgate's bench, whose schema is read from the whole table. A column with missing values is made nullable.
Continuous columns are decoded to bin midpoints (the library's behaviour, `--bins` per column, 10 by default as in
smartnoise's own `cube` style).

The venv (smartnoise-synth 1.0.8, which brings opendp 0.14.2, smartnoise-sql 1.0.10, mbi 1.1.0 on jax 0.10.2, and
opacus 0.14.0, which wants torch): torch first, so that pip keeps the local CPU wheel instead of resolving a CUDA one:

    python3.11 -m venv /work/smartnoise-venv
    /work/smartnoise-venv/bin/pip install torch==2.13.0
    /work/smartnoise-venv/bin/pip install smartnoise-synth==1.0.8
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time

TIMEOUT_EXIT = 3


class FitTimeout(Exception):
    """The fit ran past `--max-seconds`."""


def pin_to_cores(threads: int) -> None:
    """Run on `threads` cores only (as `bench/sdv_runner.py` does), before jax starts its thread pools."""
    os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'}")
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if hasattr(os, "sched_setaffinity"):  # Linux only; elsewhere the thread limits are all there is
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: max(1, threads)])


def _names(text: str | None) -> list[str]:
    return [n for n in (text or "").split(",") if n]


def constraints(frame, categorical: list[str], continuous: list[str], bounds: dict, bins: int) -> dict:
    """One smartnoise column transformer per column: labels for categories, bins (public bounds if given) for numbers."""
    from snsynth.transform import BinTransformer, LabelTransformer

    out = {}
    for name in frame.columns:
        nullable = bool(frame[name].isna().any())
        if name in continuous:
            lo, hi = bounds.get(name, (None, None))
            if lo is not None and hi is not None and hi <= lo:  # a constant column: one non-empty bin
                hi = lo + 1.0
            out[name] = BinTransformer(bins=bins, lower=lo, upper=hi, nullable=nullable)
        elif name in categorical:
            out[name] = LabelTransformer(nullable=nullable)
        else:
            raise SystemExit(f"{name!r} is in neither --categorical nor --continuous; name it in one of them")
    return out


def read_input(path: str, categorical: list[str], continuous: list[str]):
    """Categories as text (so 1 and "1" are one label), numbers as floats."""
    import pandas as pd

    frame = pd.read_csv(path, dtype={c: str for c in categorical}, keep_default_na=True)
    for c in continuous:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--synth", choices=["mst", "aim"], required=True)
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, default=None, help="default: smartnoise's own (1e-9)")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--categorical", default="")
    parser.add_argument("--continuous", default="")
    parser.add_argument("--bounds", default="{}", help='public bounds, JSON: {"x": [0, 10]}')
    parser.add_argument("--preprocessor-eps", type=float, default=0.0, help="budget share for bounds not given")
    parser.add_argument("--bins", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="the library's progress (AIM: budget used per round)")
    args = parser.parse_args()
    pin_to_cores(args.threads)

    import numpy as np
    from snsynth import Synthesizer

    np.random.seed(args.seed)  # AIM's selection draws from numpy's global generator; its noise comes from OpenDP
    categorical, continuous = _names(args.categorical), _names(args.continuous)
    frame = read_input(args.data, categorical, continuous)
    # Without column lists smartnoise infers the kinds itself (and needs --preprocessor-eps for numbers' bounds).
    named = categorical or continuous
    transformer = constraints(frame, categorical, continuous, json.loads(args.bounds), args.bins) if named else None
    options = {"verbose": args.verbose} | ({} if args.delta is None else {"delta": args.delta})
    synth = Synthesizer.create(args.synth, epsilon=args.epsilon, **options)

    def expire(*_):
        raise FitTimeout

    signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, args.max_seconds)
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(sys.stderr):
            synth.fit(frame, transformer=transformer, preprocessor_eps=args.preprocessor_eps)
    except FitTimeout:
        seconds = round(time.perf_counter() - start, 2)
        print(json.dumps({"status": "timeout", "fit_s": seconds, "max_seconds": args.max_seconds}))
        sys.exit(TIMEOUT_EXIT)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        out = synth.sample(args.rows)
    sample_s = time.perf_counter() - start
    out.to_csv(args.out, index=False)
    preprocess = float(synth._transformer.odometer.spent[0])
    spent = {"epsilon_spent": preprocess + float(synth.epsilon), "epsilon_preprocessor": preprocess}
    print(json.dumps({"status": "ok", "fit_s": fit_s, "sample_s": sample_s, **spent, "delta": synth.delta}))


if __name__ == "__main__":
    main()
