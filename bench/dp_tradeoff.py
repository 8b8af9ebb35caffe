"""Quality against the privacy budget on real tables: our private families beside smartnoise-synth's MST and AIM.

For each table, family and epsilon: column shapes, pair trends, TSTR ratio (train on synthetic over train on real,
both scored on the holdout), coverage, the epsilon spent, the fit seconds (DP preprocessing included) and, for our
private runs, whether the flow's default private gates publish the rows (`published`; `--no-gates` skips). One table is
printed per source table, then a summary at epsilon = 3 against the bar: per table our default private family (our
best where it did not run) beside AIM and MST, with shapes >= 0.90, pairs >= 0.85, TSTR >= 0.80, fit <= 120 s, at
or above AIM on all three, and published. Families take the run's target as the flow gives it (the marginal family's
anchor).

    .venv/bin/python -m bench.dp_tradeoff [--tables penguins Ecdat/Computers ...] [--models marginal,gmm,vae]
        [--epsilons 0.5,1,3,10,none] [--peers mst,aim | none] [--max-rows 20000] [--peer-seconds 600] [--peer-epsilons 3]

Public bounds are assumed: the schema inferred from the whole table stands in for a user's `--schema` file, so our
families spend the whole budget on training and the peers get the same bounds (`bench/dp_peers.py`). Every row is
scored against the same holdout with the same schema; the TSTR denominator (train on real) is the raw training split.
Families the registry does not know (a family not merged yet) are skipped with a note. `none` is the non-private run of
a family (the gmm's is the BIC-chosen `gmm`, with epsilon it is `gmm_dp`); the peers have no non-private run.
Private runs use each config's `PRIVATE` settings; the non-private run of a neural family the same epochs and batch size
(and no early stopping), so the drop is DP's alone. `mixed:NxC` names `bench.tables.mixed_table(N, C)`.

Each run writes `bench/results/dp_tradeoff.json` (`--merge` keeps the rows it did not measure: run a slow peer on
its own, then merge it into the grid); timings mean something only on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import pandas as pd
import torch

from bench import dp_peers
from bench.realism import RDATASETS, SMALL, load_table
from synthgate.models.privacy import default_delta
from synthgate.models.registry import build_model, config_class, model_names, private_auto, supports_privacy
from synthgate.schemas.table import infer_schema
from synthgate.tasks.dp_preprocess import prepare_training
from synthgate.tasks.fidelity import column_shapes, coverage, ml_utility, pair_trends
from synthgate.tasks.protect import complete_output, training_frame
from synthgate.tasks.sample import sample_rows
from synthgate.tasks.split import split_holdout
from synthgate.tasks.training import anchored

MODELS = ("marginal", "gmm", "vae")
TABLES = ("penguins", "wine", "breast_cancer", "Ecdat/Benefits", "Ecdat/MedExp", "Ecdat/Computers", "DAAG/nassCDS")
TABLES += ("mlmRev/star",)
ID_COLUMNS = {"DAAG/nassCDS": ("caseid",), "mlmRev/star": ("id", "sch", "tch")}  # case, pupil, school, teacher ids
BAR = {"shapes": 0.90, "pairs": 0.85, "tstr": 0.80}
FIT_BAR_S = 120.0
METRICS = ("spent", "shapes", "pairs", "tstr", "coverage", "fit_s", "published")


def load(name: str, max_rows: int, seed: int = 0) -> pd.DataFrame:
    """A bench table without its id columns, cut to `max_rows` by a seeded sample; `mixed:NxC` is generated."""
    if name.startswith("mixed:"):
        from bench.tables import mixed_table

        n, c = (int(v) for v in name.removeprefix("mixed:").lower().split("x"))
        frame = mixed_table(n, c)
    else:
        frame = load_table(name).drop(columns=list(ID_COLUMNS.get(name, ())))
    if len(frame) > max_rows:
        frame = frame.sample(max_rows, random_state=seed).reset_index(drop=True)
    return frame


def score(train, holdout, synthetic, schema, target, seed: int = 0) -> dict:
    """The bench's four measures of one synthetic table, all against the holdout."""
    real = training_frame(holdout, schema)
    tstr = ml_utility(train, holdout, synthetic, schema, target, seed=seed).value if target else None
    return {
        "shapes": column_shapes(real, synthetic, schema).value,
        "pairs": pair_trends(real, synthetic, schema).value,
        "tstr": tstr,
        "coverage": coverage(real, synthetic, schema).value,
    }


def _options(name: str, eps: float | None, epochs: int | None, overrides: dict) -> dict:
    """A family's options: its config's private settings (also for the plain run of a neural family), overrides."""
    fields = config_class(name).__dataclass_fields__
    options = {} if name == "gmm" else dict(getattr(config_class(name), "PRIVATE", {}))
    options.update(overrides.get(name, {}))
    if epochs is not None and "epochs" in fields:
        options["epochs"] = epochs
    if eps is None:  # the plain run: no early stopping, and no setting that exists only for DP training
        options.update({k: v for k, v in (("val_fraction", 0.0), ("patience", None)) if k in fields})
        options = {k: v for k, v in options.items() if k not in ("pac", "private_loss")}
    return options


def run_ours(name, eps, train, holdout, schema, target, *, epochs=None, overrides=None, seed=0, gates=True) -> dict:
    """Fit family `name` at `eps` (None: non-private) the way the flow does, sample, and score; a private run is also
    judged by the flow's default private gates (`gates`)."""
    start = time.perf_counter()
    prepared = prepare_training(
        train, schema, model=name, epsilon=eps, delta=None, rare_k=None, public_schema=True, seed=seed
    )
    if prepared.private is None:
        from synthgate.models.registry import normalization_for
        from synthgate.tasks.preprocess import encode_training

        encoder, x = encode_training(prepared.train, prepared.schema, normalization=normalization_for(name))
    else:
        encoder, x = prepared.private.encoder, prepared.private.encoded
    built = prepared.model_name(name)
    # The flow's options: the budget, and the target as anchor where the family takes one (the marginal family).
    options = anchored(prepared.model_options(_options(name, eps, epochs, overrides or {})), built, target, prepared)
    model = build_model(built, spans=encoder.spans_, device="cpu", options=options)
    model.fit(x)
    seconds = time.perf_counter() - start
    # The rows the flow would publish: its sampling step, then its completion (rules between columns kept, every
    # source column back), so the gates judge what a run would write
    synthetic = complete_output(sample_rows(model, encoder, len(train), seed=1), prepared.schema, seed=seed, real=train)
    row = {
        "spent": prepared.spent(model)[0],
        **score(train, holdout, synthetic, schema, target, seed),
        "fit_s": seconds,
    }
    if eps is not None and gates:
        row |= judged(prepared.train, holdout, synthetic, schema, target, eps, seed)
    return row


def judged(train, holdout, synthetic, schema, target, eps, seed: int = 0) -> dict:
    """Whether the run's own gates, as a private run gets them by default, would publish these rows; and if not,
    which checks refused them (in the row's note)."""
    from synthgate.schemas.request import RunRequest
    from synthgate.tasks.verdict import judge_output

    request = RunRequest(input="bench", output="bench.parquet", epsilon=eps, target=target, seed=seed)
    result = judge_output(train, holdout, synthetic, schema, request)
    return {"published": result.passed} | (
        {"note": "refused by " + ", ".join(result.failing)} if result.failing else {}
    )


def run_peer(synth, eps, train, holdout, schema, target, *, max_seconds, seed=0) -> dict:
    """Fit smartnoise's `synth` at `eps` in its venv with our default delta, and score its rows as ours."""
    delta = default_delta(len(train))
    synthetic, report = dp_peers.run_peer(
        synth, train, schema, epsilon=eps, delta=delta, max_seconds=max_seconds, seed=seed
    )
    if synthetic is None:
        note = report.get("error") or f"{report.get('status')} after {report.get('fit_s', 0):.0f} s"
        return {"fit_s": report.get("fit_s"), "note": note}
    scores = score(train, holdout, synthetic, schema, target, seed)
    return {"spent": report["epsilon_spent"], **scores, "fit_s": report["fit_s"]}


def run_table(
    table: str, models, epsilons, peers, *, max_rows, peer_seconds, peer_epsilons=None, seed=0, **fit_kw
) -> list[dict]:
    """Every (family or peer, epsilon) row of one table, printed as it lands; one failing run is recorded, not fatal.

    The peers run at `peer_epsilons` (default: every private epsilon); `fit_kw` (epochs, overrides) goes to `run_ours`.
    """
    frame = load(table, max_rows, seed)
    schema = infer_schema(frame, name=table.replace("/", "_"))
    train, holdout = split_holdout(frame, fraction=0.2, seed=seed)
    target = SMALL.get(table) or RDATASETS.get(table)
    target = target if target in {c.name for c in schema.modelled} else None
    print(f"\n{table}: {len(frame)} rows ({len(train)} train), {len(schema.modelled)} columns, target {target}")
    jobs = []
    for name in models:
        if name not in model_names():
            print(f"note: {name!r} is not in this checkout's registry; skipped")
            continue
        for eps in epsilons:
            if eps is not None and not supports_privacy(name):
                print(f"note: {name!r} has no private training path; epsilon {eps} skipped")
                continue
            jobs.append((name, eps))
    peer_epsilons = [e for e in (epsilons if peer_epsilons is None else peer_epsilons) if e is not None]  # no plain run
    jobs += [(f"sn_{synth}", eps) for synth in peers for eps in peer_epsilons]
    rows = []
    for name, eps in jobs:
        try:
            if name.startswith("sn_"):
                measured = run_peer(
                    name.removeprefix("sn_"), eps, train, holdout, schema, target, max_seconds=peer_seconds, seed=seed
                )
            else:
                measured = run_ours(name, eps, train, holdout, schema, target, seed=seed, **fit_kw)
        except Exception as exc:  # one failing run must not end the bench
            measured = {"note": f"{type(exc).__name__}: {exc}"[:200]}
        head = {"table": table, "train_rows": len(train), "model": name, "epsilon": "none" if eps is None else eps}
        rows.append(head | _complete(measured))
        print(_line(rows[-1]), flush=True)
    return rows


def _complete(measured: dict) -> dict:
    """Every row with the same keys, so the record renders as one table."""
    return {k: measured.get(k) for k in METRICS} | {"note": measured.get("note", "")}


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _line(row: dict) -> str:
    eps = row["epsilon"] if isinstance(row["epsilon"], str) else f"{row['epsilon']:g}"
    cells = [row["model"], eps, *(row.get(k) for k in METRICS), row["note"]]
    return "| " + " | ".join(_cell(v) for v in cells) + " |"


def print_table(table: str, rows: list[dict]) -> None:
    print(f"\n{table}\n| model | epsilon | " + " | ".join(METRICS) + " | note |")
    print("|---" * (len(METRICS) + 3) + "|")
    for row in rows:
        print(_line(row))


def _mean_quality(row: dict) -> float:
    values = [row[k] for k in BAR if row.get(k) is not None]
    return sum(values) / len(values) if values else -1.0


def verdict(ours: dict, aim: dict | None) -> tuple[list[str], bool]:
    """The bar's checks on one of our rows at epsilon 3: each (name, passed) as text, and whether all passed."""
    # TSTR is checked only where the table has a target whose real model has skill (else it is None for everyone).
    checks = {f"{k}>={v}": ours[k] is not None and ours[k] >= v for k, v in BAR.items() if k != "tstr" or ours[k]}
    checks[f"fit<={FIT_BAR_S:.0f}s"] = ours.get("fit_s") is not None and ours["fit_s"] <= FIT_BAR_S
    if ours.get("published") is not None:  # rows recorded before the bench ran the gates have no verdict
        checks["published"] = bool(ours["published"])
    if aim is not None and aim.get("shapes") is not None:
        checks[">=AIM"] = all(ours.get(k) is not None and ours[k] >= aim[k] for k in BAR if aim.get(k) is not None)
    return [f"{k} {'ok' if ok else 'FAIL'}" for k, ok in checks.items()], all(checks.values())


def summary(rows: list[dict], eps: float = 3.0) -> list[dict]:
    """Per table at `eps`: our default private family (`private_auto`; where it did not run, our best by the mean of
    shapes, pairs and TSTR) beside AIM and MST, judged against the bar."""
    print(f"\nSummary at epsilon {eps:g}\n| table | who | " + " | ".join(METRICS) + " | bar |")
    print("|---" * (len(METRICS) + 3) + "|")
    out = []
    for table in dict.fromkeys(r["table"] for r in rows):
        at = [r for r in rows if r["table"] == table and r["epsilon"] == eps]
        ours = [r for r in at if not r["model"].startswith("sn_") and r["shapes"] is not None]
        peers = {r["model"]: r for r in at if r["model"].startswith("sn_")}
        default = [r for r in ours if r["model"] == private_auto(r["train_rows"])]
        best = default[0] if default else max(ours, key=_mean_quality) if ours else None
        checks, passed = verdict(best, peers.get("sn_aim")) if best else (["no row of ours"], False)
        for r in [best, peers.get("sn_aim"), peers.get("sn_mst")]:
            if r is not None:
                bar = ("PASS " if passed else "FAIL ") + ", ".join(checks) if r is best else r["note"]
                print(f"| {table} | {r['model']} | " + " | ".join(_cell(r.get(k)) for k in METRICS) + f" | {bar} |")
        out.append({"table": table, "best": best and best["model"], "passed": passed, "checks": "; ".join(checks)})
    return out


def _epsilons(text: str | None) -> list[float | None] | None:
    """`0.5,1,none` -> [0.5, 1.0, None] (none or inf: the non-private run); None stays None."""
    return None if text is None else [None if e in ("none", "inf") else float(e) for e in text.split(",")]


def main() -> None:
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # shared CPUs: one thread per bench keeps timings comparable
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", nargs="+", default=list(TABLES))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epsilons", default="0.5,1,3,10,none")
    parser.add_argument("--peers", default=",".join(dp_peers.PEERS), help="smartnoise synthesizers, or none")
    parser.add_argument("--max-rows", type=int, default=20_000)
    parser.add_argument("--peer-seconds", type=float, default=600.0, help="wall-clock cap per peer fit (AIM's)")
    parser.add_argument("--peer-epsilons", default=None, help="the peers' epsilons (default: --epsilons), e.g. 3")
    parser.add_argument("--epochs", type=int, default=None, help="neural epochs (default: the configs' PRIVATE)")
    parser.add_argument("--options", default="{}", help='per-model option overrides, JSON: {"gan": {"lr": 5e-4}}')
    parser.add_argument("--no-gates", action="store_true", help="skip judging private runs by the flow's DP gates")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the record's rows this run does not measure (a slow peer run on its own adds to the grid)",
    )
    args = parser.parse_args()
    epsilons = _epsilons(args.epsilons)
    peers = [] if args.peers == "none" else [p for p in args.peers.split(",") if p]
    if peers and not dp_peers.available():
        print(f"note: no smartnoise venv at {dp_peers.PYTHON} (see bench/smartnoise_runner.py); peers skipped")
        peers = []
    rows = []
    for table in args.tables:
        kw = dict(max_rows=args.max_rows, peer_seconds=args.peer_seconds, peer_epsilons=_epsilons(args.peer_epsilons))
        fit_kw = dict(epochs=args.epochs, overrides=json.loads(args.options), gates=not args.no_gates)
        table_rows = run_table(table, args.models.split(","), epsilons, peers, **kw, **fit_kw)
        print_table(table, table_rows)
        rows += table_rows
    from bench.results import merged_rows, record

    keys = ("table", "model", "epsilon")
    if args.merge:
        rows = merged_rows("dp_tradeoff", rows, keys)
    verdicts = summary(rows)

    figures = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    notes = [f"epsilon 3 bar: {v['table']}: {v['best']} {'passes' if v['passed'] else 'fails'} ({v['checks']})"
             for v in verdicts]  # fmt: skip
    record(
        "dp_tradeoff",
        figures,
        title="Privacy against fidelity on real tables, with smartnoise MST and AIM",
        notes=notes,
        merge_on=keys if args.merge else None,
    )


if __name__ == "__main__":
    main()
