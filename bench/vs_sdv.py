"""Bench synthgate's table models against SDV (GaussianCopula, TVAE, CTGAN): fit+sample time and fidelity.

SDV is never a synthgate dependency (it pins pandas < 3), so it runs in its own venv through `bench/sdv_runner.py`:

    python3 -m venv /work/sdv-venv
    /work/sdv-venv/bin/pip install torch==2.13.0   # first, or pip pulls a multi-GB CUDA build
    /work/sdv-venv/bin/pip install sdv

Then, from the repository root:

    .venv/bin/python bench/vs_sdv.py --epochs 100 [--sdv-python /work/sdv-venv/bin/python] [--tables penguins wine mixed big]
        [--repeats 5]   # median seconds of 5 fits each (ours and SDV's): sub-second fits vary by a third here

Every model gets the same tables and the same epoch count, and every thread pool (torch's, OpenMP, OpenBLAS, MKL) the
same thread count in both processes (`--threads`, default 1: on a shared 2-core machine a second thread mostly
spin-waits; `--threads 2` gives both processes both cores, as an unconfigured install gets here, and process CPU
seconds then count the spinning too), and both processes are pinned to that many cores, so SDV's joblib worker
processes (its preprocessing) cannot take a core a thread limit denies (`pin_to_cores`). Repeats run round robin
over the models. Early stopping is off for our models so epochs are equal. Times are wall seconds of fit (including
preprocessing: our encoder, SDV's RDT) plus sample (including decoding); schema inference (ours) and metadata detection (SDV's) run before the clock, and so do
one-off lazy imports (scipy, torch._dynamo on the first optimizer), in both processes. Tables: penguins, wine, `mixed` (`bench.tables.mixed_table`, 20k rows x 12 columns)
and `big` (20k rows x 8 columns, skewed and bimodal numbers, a rare level). Scores are computed here, the same way for everyone, against the training table:
column shapes = mean of 1 - KS (numbers) or 1 - TV (categories) per column; pair trends = mean over column pairs of
1 - |corr_real - corr_syn| / 2 for two numbers, else 1 - TV of the joint distribution (numbers in 10 quantile bins).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import synthgate.models.encoders.modes  # noqa: F401  (scipy's import, loaded lazily by the encoder, stays out of the timings)
from bench.results import record
from bench.sdv_runner import WARM_UP_ROWS, pin_to_cores, warm_up
from bench.tables import mixed_table
from synthgate.models.base import make_generator
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import build_model, model_names, normalization_for
from synthgate.schemas.table import infer_schema

SDV_PYTHON = os.environ.get("SDV_PYTHON", "/work/sdv-venv/bin/python")
OURS = ["gmm", "vae", "gan", "autoencoder"]
SDV = ["gaussian_copula", "tvae", "ctgan"]


# ------------------------------------------------------------------------------------------------------ tables
def big_table(n: int = 20_000, seed: int = 0) -> pd.DataFrame:
    """A generated mixed table: correlated skewed numbers, a category that shifts them, a rare level, missing values."""
    rng = np.random.default_rng(seed)
    segment = rng.choice(["retail", "sme", "corporate", "public"], n, p=[0.6, 0.25, 0.12, 0.03])
    region = rng.choice(list("NESWC"), n)
    base = {"retail": 0.0, "sme": 1.0, "corporate": 2.5, "public": 1.5}
    income = np.exp(10 + np.array([base[s] for s in segment]) * 0.5 + rng.normal(0, 0.4, n))
    spend = income * rng.uniform(0.2, 0.6, n)
    age = np.clip(rng.normal(45, 12, n) + (segment == "retail") * -5, 18, 90).round()
    score = np.concatenate([rng.normal(600, 40, n // 2), rng.normal(750, 25, n - n // 2)])[rng.permutation(n)]
    tenure = rng.poisson(5, n).astype(float)
    tenure[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "segment": segment,
            "region": region,
            "income": income.round(-2),  # rounded: unique floats would be inferred as identifiers
            "spend": spend.round(-1),
            "age": age.astype(int),
            "score": score.round(1),
            "tenure": tenure,
            "churn": rng.random(n) < 1 / (1 + np.exp(-(age - 50) / 10)),
        }
    )


def load_table(name: str) -> pd.DataFrame:
    if name == "penguins":
        from palmerpenguins import load_penguins

        return load_penguins()
    if name == "wine":
        from sklearn.datasets import load_wine

        bunch = load_wine(as_frame=True)
        frame = bunch.frame.copy()
        frame["target"] = frame["target"].map(dict(enumerate(bunch.target_names))).astype(str)
        return frame
    if name == "big":
        return big_table()
    if name == "mixed":
        return mixed_table(20_000, 12)
    raise SystemExit(f"unknown table {name!r}")


# ------------------------------------------------------------------------------------------------------ scores
def _is_number(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s) and s.nunique() > 10


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.sort(a[np.isfinite(a)]), np.sort(b[np.isfinite(b)])
    if not len(a) or not len(b):
        return 0.0
    grid = np.concatenate([a, b])
    return float(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b)).max())


def _labels(real: pd.Series, syn: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    if _is_number(real):
        edges = np.unique(np.nanquantile(real.astype(float), np.linspace(0, 1, 11)))
        r = np.digitize(real.astype(float), edges[1:-1]).astype(str)
        s = np.digitize(pd.to_numeric(syn, errors="coerce").astype(float), edges[1:-1]).astype(str)
        r[real.isna().to_numpy()] = "nan"
        s[syn.isna().to_numpy()] = "nan"
        return r, s
    return real.astype(str).to_numpy(), syn.astype(str).to_numpy()


def _tv(r: np.ndarray, s: np.ndarray) -> float:
    pr = pd.Series(r).value_counts(normalize=True)
    ps = pd.Series(s).value_counts(normalize=True)
    return 0.5 * float(pr.subtract(ps, fill_value=0).abs().sum())


def column_shapes(real: pd.DataFrame, syn: pd.DataFrame) -> float:
    scores = []
    for col in real.columns:
        if _is_number(real[col]):
            scores.append(1 - _ks(real[col].to_numpy(float), pd.to_numeric(syn[col], errors="coerce").to_numpy(float)))
        else:
            scores.append(1 - _tv(*_labels(real[col], syn[col])))
    return float(np.mean(scores))


def pair_trends(real: pd.DataFrame, syn: pd.DataFrame) -> float:
    scores = []
    for a, b in itertools.combinations(real.columns, 2):
        if _is_number(real[a]) and _is_number(real[b]):
            cr = real[[a, b]].astype(float).corr().iloc[0, 1]
            cs = syn[[a, b]].apply(pd.to_numeric, errors="coerce").astype(float).corr().iloc[0, 1]
            scores.append(1 - abs(cr - (0.0 if np.isnan(cs) else cs)) / 2)
        else:
            ra, sa = _labels(real[a], syn[a])
            rb, sb = _labels(real[b], syn[b])
            joint_r = pd.Series(ra).astype(str) + "|" + pd.Series(rb).astype(str)
            joint_s = pd.Series(sa).astype(str) + "|" + pd.Series(sb).astype(str)
            scores.append(1 - _tv(joint_r.to_numpy(), joint_s.to_numpy()))
    return float(np.mean(scores))


# ------------------------------------------------------------------------------------------------------ runners
def run_ours(
    name: str, frame: pd.DataFrame, epochs: int, device: str = "cpu", *, early_stopping: bool = False
) -> tuple[float, float, pd.DataFrame, int | None]:
    """Fit and sample one of our models; returns (wall s, CPU s, synthetic frame, epochs run or None for the gmm).

    Early stopping is off unless asked for, so that epochs are equal to SDV's.
    """
    schema = infer_schema(frame)  # outside the clock: the SDV runner detects its metadata before its clock starts
    start, cpu = time.perf_counter(), time.process_time()
    encoder = TableEncoder(schema, normalization=normalization_for(name)).fit(frame)  # as the flow encodes for it
    x = encoder.transform(frame)
    options: dict = {"n_components": None} if name == "gmm" else {"epochs": epochs}
    if name in ("vae", "autoencoder") and not early_stopping:
        options |= {"patience": None, "val_fraction": 0.0}
    model = build_model(name, spans=encoder.spans_, device=device, options=options).fit(x.to(device))
    synthetic = encoder.inverse_transform(model.sample(len(frame), generator=make_generator(0, device)))
    history = getattr(model, "history_", None)
    return time.perf_counter() - start, time.process_time() - cpu, synthetic, history and history.epochs_run


def thread_env(threads: int) -> dict[str, str]:
    """The environment for a peer's process with every native thread pool (OpenMP, OpenBLAS, MKL) at `threads`.

    torch's own thread count alone left numpy / scipy / scikit-learn (RDT's mode fits) on both cores: SDV's CPU
    seconds ran 10% above its wall seconds on the 20k table. Our process gets the same limits (`limit_threads`).
    """
    pools = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return {**os.environ, **dict.fromkeys(pools, str(threads))}


def limit_threads(threads: int) -> None:
    """Cap this process's torch and native thread pools at `threads`, as `thread_env` caps a peer's, and pin it (and
    so the SDV runners it starts) to `threads` cores: SDV's preprocessing runs joblib worker processes, which no
    thread limit reaches (`pin_to_cores`)."""
    from threadpoolctl import threadpool_limits

    pin_to_cores(threads)
    torch.set_num_threads(threads)
    threadpool_limits(threads)  # numpy's OpenBLAS (the mode EM's products) and any OpenMP runtime already loaded


def run_sdv(
    name: str, frame: pd.DataFrame, epochs: int, sdv_python: str, threads: int, gpu: bool = False
) -> tuple[float, float, pd.DataFrame]:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "in.csv", Path(tmp) / "out.csv"
        frame.to_csv(data, index=False)
        cmd = [sdv_python, str(Path(__file__).with_name("sdv_runner.py")), "--data", str(data), "--model", name]
        cmd += ["--epochs", str(epochs), "--rows", str(len(frame)), "--out", str(out), "--threads", str(threads)]
        cmd += ["--gpu"] if gpu else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=thread_env(threads))
        if proc.returncode:
            raise RuntimeError(f"SDV {name} failed:\n{proc.stderr[-3000:]}")
        timing = json.loads(proc.stdout.strip().splitlines()[-1])
        synthetic = pd.read_csv(out)
    # Only fit + sample, as timed inside the runner: the subprocess's interpreter and import start-up is not SDV's.
    return timing["fit_s"] + timing["sample_s"], timing["cpu_s"], synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", nargs="+", default=["penguins", "wine", "mixed"])
    parser.add_argument("--models", nargs="+", default=OURS + SDV)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sdv-python", default=SDV_PYTHON)
    parser.add_argument(
        "--device", default="cpu", help="ours on cpu or cuda; with cuda SDV's TVAE/CTGAN get the GPU too"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="fit + sample each model this many times (ours and SDV's alike, round robin over the models) and report "
        "the median seconds: on a shared machine one run of a sub-second fit varies by a third",
    )
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    limit_threads(args.threads)
    warm_up(args.device)  # torch's one-off lazy imports (and CUDA's start-up), paid before the clock as for SDV
    model_names()  # imports every model module (image models too) before the clock, as the runner imports SDV
    # A first fit in a process pays one-off costs (first calls of torch's kernels, the mode EM's, lazy imports): one
    # epoch of each of ours on a slice of penguins before the clock, as the runner warms each SDV fit up.
    warm_frame = load_table("penguins").head(WARM_UP_ROWS)
    for model in (m for m in args.models if m in OURS):
        run_ours(model, warm_frame, 1, args.device)
    gpu = args.device.startswith("cuda")

    rows = []
    for table in args.tables:
        frame = load_table(table)
        runs: dict[str, list] = {model: [] for model in args.models}
        # Round robin over the models, repeat by repeat: a slow minute on this shared machine (its speed drifts by up
        # to a third) then hits every model's runs alike instead of all of one model's.
        for _ in range(max(1, args.repeats)):
            for model in args.models:
                if model in SDV:
                    runs[model].append(run_sdv(model, frame, args.epochs, args.sdv_python, args.threads, gpu))
                else:
                    runs[model].append(run_ours(model, frame, args.epochs, args.device)[:3])
                # Each run's seconds as it ends: a long peer cut by a time limit leaves the others' figures behind.
                print(f"# {table} {model}: {runs[model][-1][0]:.2f} s", file=sys.stderr, flush=True)
        for model in args.models:
            seconds = float(np.median([r[0] for r in runs[model]]))
            cpu = float(np.median([r[1] for r in runs[model]]))
            synthetic = runs[model][0][2]  # scored once: the first run, as with a single repeat
            row = {
                "table": table,
                "model": model if model in OURS else f"sdv_{model}",
                "seconds": round(seconds, 2),
                "cpu_s": round(cpu, 2),  # process CPU seconds: steadier than wall time on a loaded machine
                "shapes": round(column_shapes(frame, synthetic), 3),
                "pairs": round(pair_trends(frame, synthetic), 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = pd.DataFrame(rows)
    for _, part in result.groupby("table", sort=False):
        ref = part.set_index("model")["seconds"]
        for peer in ("sdv_tvae", "sdv_ctgan"):
            if peer in ref:
                result.loc[part.index, f"x_vs_{peer[4:]}"] = (ref[peer] / part["seconds"]).round(1).to_numpy()
        cpu = part.set_index("model")["cpu_s"]
        for peer in ("sdv_tvae", "sdv_ctgan"):
            if peer in cpu:
                result.loc[part.index, f"cpu_x_vs_{peer[4:]}"] = (cpu[peer] / part["cpu_s"]).round(1).to_numpy()
    print(
        f"\nepochs={args.epochs} threads={args.threads} device={args.device} repeats={args.repeats} "
        "(speed-up = SDV seconds / our seconds, medians over the repeats)"
    )
    print(result.to_string(index=False))
    record(
        "vs_sdv",
        result.to_dict(orient="records"),
        title=f"Against SDV: fit + sample seconds, column shapes, pair trends ({args.epochs} epochs)",
        device=args.device,
        notes=[f"threads={args.threads}, medians of {args.repeats} repeats; x_vs_* = SDV seconds / ours"],
    )
    if args.json:
        result.to_json(args.json, orient="records", indent=2)


if __name__ == "__main__":
    main()
