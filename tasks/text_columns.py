"""Free-text columns of the output: synthesised from the table's own text, conditioned on the synthetic row.

Each free-text column (schema `pii: free_text`) gets an action: `synthesize` (the default for columns of at most
`TEXT_MAX_MEAN_LENGTH` characters on average), `fake` (Faker text of the real lengths, as `complete_output` writes it)
or `drop`. To synthesise, the column's training texts are scrubbed of personal data (`tasks.text_privacy`), a
`models.text.TextModel` learns them conditioned on each row's encoded modelled columns, and it samples one text per
synthetic row, conditioned on that row; placeholders are then filled with fakes. The memorisation figures of
`tasks.text_memory` and the fidelity figures of `tasks.text_fidelity` go into the gate results as information.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import make_generator, resolve_device
from synthgate.models.text import TextConfig, TextModel
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import MetricResult
from synthgate.schemas.pii import PIIKind
from synthgate.schemas.table import ColumnKind, TableSchema
from synthgate.tasks.text_fidelity import category_similarity, text_fidelity
from synthgate.tasks.text_memory import memorisation
from synthgate.tasks.text_privacy import PLACEHOLDERS, fill, scrub_column

logger = logging.getLogger(__name__)

TextAction = Literal["synthesize", "fake", "drop"]
# Longer texts stay Faker text: a character model trained in seconds does not hold a page together
# (docs/decisions.md#text-columns).
TEXT_MAX_MEAN_LENGTH = 1000


@dataclass
class TextOutcome:
    """The output with its text columns replaced, the notes for the run, and information metrics for the gates."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    metrics: list[MetricResult] = field(default_factory=list)
    actions: dict[str, str] = field(default_factory=dict)
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # report only, never the metadata
    privacy: dict[str, dict[str, Any]] = field(default_factory=dict)  # per column, what its DP fit spent


def text_actions(
    schema: TableSchema, real: pd.DataFrame, overrides: dict[str, str] | None = None, *, private: bool = False
) -> tuple[dict[str, str], list[str]]:
    """The action per free-text column and a note for each default that is not `synthesize`.

    Under differential privacy (`private`) the default is `fake`: DP text needs a budget of its own that a table's
    usual epsilon does not leave (docs/decisions.md#text-dp); `--text COL=synthesize` asks for it.

    Raises:
        InvalidInputError: an override names a column that is not free text, or an unknown action.
    """
    overrides = dict(overrides or {})
    columns = [c for c in schema.columns if c.pii == PIIKind.FREE_TEXT and c.pii_action != "drop"]
    names = [c.name for c in columns]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InvalidInputError(
            f"--text names {unknown}, which are not free-text columns of this table; free-text columns are {names} "
            "(a column becomes free text with `pii: free_text` in the schema)"
        )
    bad = {k: v for k, v in overrides.items() if v not in ("synthesize", "fake", "drop")}
    if bad:
        raise InvalidInputError(f"--text {bad}: the action must be synthesize, fake or drop")
    actions: dict[str, str] = {}
    notes: list[str] = []
    for col in columns:
        if col.name in overrides:
            actions[col.name] = overrides[col.name]
            continue
        texts = real[col.name].dropna().astype(str) if col.name in real else pd.Series([], dtype=str)
        mean = float(texts.str.len().mean()) if len(texts) else 0.0
        if col.pii_action == "hash" or not len(texts):
            actions[col.name] = "fake"
        elif mean > TEXT_MAX_MEAN_LENGTH:
            actions[col.name] = "fake"
            notes.append(
                f"text column {col.name!r}: mean length {mean:.0f} > {TEXT_MAX_MEAN_LENGTH} characters, "
                "filled with Faker text (--text COL=synthesize to model it anyway)"
            )
        elif private:
            actions[col.name] = "fake"
            notes.append(
                f"text column {col.name!r}: Faker text under --epsilon (--text {col.name}=synthesize trains it with "
                "DP-SGD on a share of the budget; it needs a large budget to read well)"
            )
        else:
            actions[col.name] = "synthesize"
    return actions, notes


def columns_to_synthesize(schema: TableSchema, frame: pd.DataFrame, overrides: dict[str, str] | None) -> list[str]:
    """The free-text columns to synthesise under DP (asked for with `--text COL=synthesize`); each gets a budget."""
    actions = text_actions(schema, frame, overrides, private=True)[0]
    return [name for name, action in actions.items() if action == "synthesize"]


def _conditions(encoder: Any, frame: pd.DataFrame, schema: TableSchema) -> torch.Tensor | None:
    modelled = [c.name for c in schema.modelled if c.name in frame]
    return encoder.transform(frame[modelled]) if modelled and encoder is not None else None


def synthesize_text(
    synthetic: pd.DataFrame,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: TableSchema,
    encoder: Any,
    *,
    seed: int,
    overrides: dict[str, str] | None = None,
    budget: dict[str, tuple[float, float]] | None = None,
    device: str | torch.device | None = "cpu",
    config: TextConfig | None = None,
) -> TextOutcome:
    """Replace the free-text columns of `synthetic` by their actions' values.

    Args:
        synthetic: the complete output (text columns hold Faker text from `complete_output`).
        train: the training rows, text included; the model learns from them only.
        holdout: the holdout rows, only to measure the holdout's own memorisation rates and fidelity.
        schema: the run's schema.
        encoder: the fitted `TableEncoder` of the modelled columns; its vectors condition the text.
        seed: the run seed (model initialisation, sampling and fakes).
        overrides: `--text COL=ACTION` choices.
        budget: with `--epsilon`, (epsilon, delta) per text column (`tasks.dp_preprocess.text_budget`); a column
            without one keeps Faker text.
        device: where the text model trains.
        config: text model hyperparameters.
    """
    real = pd.concat([train, holdout], ignore_index=True)
    actions, notes = text_actions(schema, real, overrides, private=budget is not None)
    out, metrics, examples, privacy = synthetic.copy(), [], {}, {}
    pii = [c.name for c in schema.columns if c.pii not in (None, PIIKind.FREE_TEXT) and c.name in train]
    todo = [name for name, action in actions.items() if action == "synthesize"]
    train_cond = _conditions(encoder, train, schema) if todo else None
    synth_cond = _conditions(encoder, synthetic, schema) if todo else None
    categories = [c.name for c in schema.modelled if c.kind in (ColumnKind.CATEGORICAL, ColumnKind.BOOLEAN)]
    device = resolve_device(device)
    for name, action in actions.items():
        if action == "drop":
            out = out.drop(columns=name, errors="ignore")
            continue
        if action == "fake":
            continue
        if budget is not None and name not in budget:
            actions[name] = "fake"
            notes.append(f"text column {name!r}: no privacy budget was set aside for it, filled with Faker text")
            continue
        texts, found = scrub_column(train[name], train[pii])
        held, held_found = scrub_column(holdout[name], holdout[pii])
        cfg = config or TextConfig(seed=seed)
        if budget is not None:
            cfg = dataclasses.replace(cfg, epsilon=budget[name][0], delta=budget[name][1])
        model = TextModel(cfg, placeholders=PLACEHOLDERS, device=device).fit(texts, conditions=train_cond)
        sampled = model.sample(len(out), conditions=synth_cond, generator=make_generator(seed, device))
        metrics.append(_memory_metric(name, texts, held, sampled))
        metrics.append(_fidelity_metric(name, held, sampled))
        similarity = category_similarity(holdout, held, out, sampled, categories, seed=seed)
        if similarity["similarity"] is not None:
            metrics.append(_category_metric(name, similarity))
        filled = fill(sampled, seed=seed, avoid=found | held_found)
        examples[name] = _examples(held, filled, seed=seed)
        dtype = schema.column(name).dtype
        series = pd.Series(filled, index=out.index, dtype=object)
        out[name] = series.astype(dtype) if dtype in ("str", "string") else series
        how = "with DP-SGD " if model.privacy_ else ""
        notes.append(
            f"text column {name!r}: synthesised {how}by a GRU over words and characters conditioned on the row, "
            f"{len(found)} personal values replaced by placeholders before training"
        )
        if model.privacy_:
            privacy[name] = model.privacy_
            notes.append(
                f"privacy: text column {name!r} spent epsilon {model.privacy_['epsilon']:.3g} of its "
                f"{cfg.epsilon:.3g} (DP-SGD; public characters, DP-released words, noisy missing count)"
            )
        logger.info("text column %r synthesised (last loss %.3f)", name, model.history_[-1])
    return TextOutcome(out, notes, metrics, actions, examples, privacy)


N_EXAMPLES = 5


def _examples(real: list[str | None], synthetic: list[str | None], *, seed: int) -> dict[str, list[str]]:
    """A few scrubbed holdout texts (placeholders where personal values were) and synthetic texts, for the report."""
    rng = np.random.default_rng(seed)
    picks = {}
    for side, texts in (("real", real), ("synthetic", synthetic)):
        kept = [t for t in texts if isinstance(t, str)]
        idx = rng.choice(len(kept), size=min(N_EXAMPLES, len(kept)), replace=False) if kept else []
        picks[side] = [kept[i] for i in sorted(idx)]
    return picks


def _memory_metric(
    name: str, train: list[str | None], holdout: list[str | None], synthetic: list[str | None]
) -> MetricResult:
    figures = memorisation(train, holdout, synthetic)
    return MetricResult.judge(
        f"text_exact_copies[{name}]",
        "privacy",
        figures["synthetic_exact_share"],
        None,
        "max",
        description=(
            "share of synthetic texts equal to a training text (information): compare with the holdout's own share "
            f"{figures['holdout_exact_share']}; longest shared word run p95 {figures['synthetic_ngram_p95']} "
            f"vs holdout {figures['holdout_ngram_p95']}"
        ),
        details=figures,
    )


def _fidelity_metric(name: str, holdout: list[str | None], synthetic: list[str | None]) -> MetricResult:
    figures = text_fidelity(holdout, synthetic)
    return MetricResult.judge(
        f"text_bigram_distance[{name}]",
        "fidelity",
        figures["bigram_distance"],
        None,
        "max",
        description=(
            "total variation distance of word pairs, synthetic vs holdout (information); length KS "
            f"{figures['length_ks']}, vocabulary overlap {figures['vocabulary_overlap']}"
        ),
        details=figures,
    )


def _category_metric(name: str, figures: dict[str, Any]) -> MetricResult:
    return MetricResult.judge(
        f"text_category_similarity[{name}]",
        "fidelity",
        figures["similarity"],
        None,
        "min",
        description=(
            "word similarity of synthetic and holdout texts on rows of the same category, level-weighted, mean over "
            f"categorical columns (information); {figures['shuffled']} with the synthetic texts shuffled over rows"
        ),
        details=figures,
    )


synthesize_text_task = task(name="synthesize-text", cache_policy=NO_CACHE)(synthesize_text)
