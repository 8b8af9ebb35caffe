"""Free-text columns of the output: synthesised from the table's own text, conditioned on the synthetic row.

Each free-text column (schema `pii: free_text`) gets an action: `synthesize` (the default for columns of at most
`TEXT_MAX_MEAN_LENGTH` characters on average), `fake` (Faker text of the real lengths, as `complete_output` writes it)
or `drop`. To synthesise, the column's training texts are scrubbed of personal data (`tasks.text_privacy`), a
`models.text.TextModel` learns them conditioned on each row's encoded modelled columns, and it samples one text per
synthetic row, conditioned on that row; placeholders are then filled with fakes. The memorisation figures of
`tasks.text_memory` and the fidelity figures of `tasks.text_fidelity` go into the gate results as information.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd
import torch
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import make_generator, resolve_device
from synthgate.models.text import TextConfig, TextModel
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.gates import MetricResult
from synthgate.schemas.pii import PIIKind
from synthgate.schemas.table import TableSchema
from synthgate.tasks.text_fidelity import text_fidelity
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


def text_actions(
    schema: TableSchema, real: pd.DataFrame, overrides: dict[str, str] | None = None, *, epsilon: float | None = None
) -> tuple[dict[str, str], list[str]]:
    """The action per free-text column and a note for each default that is not `synthesize`.

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
        elif epsilon is not None:
            actions[col.name] = "fake"
            notes.append(f"text column {col.name!r}: no differentially private text model yet, filled with Faker text")
        else:
            actions[col.name] = "synthesize"
    return actions, notes


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
    epsilon: float | None = None,
    device: str | torch.device | None = "cpu",
    config: TextConfig | None = None,
) -> TextOutcome:
    """Replace the free-text columns of `synthetic` by their actions' values.

    Args:
        synthetic: the complete output (text columns hold Faker text from `complete_output`).
        train: the training rows, text included; the model learns from them only.
        holdout: the holdout rows, only to measure the holdout's own memorisation rates.
        schema: the run's schema.
        encoder: the fitted `TableEncoder` of the modelled columns; its vectors condition the text.
        seed: the run seed (model initialisation, sampling and fakes).
        overrides: `--text COL=ACTION` choices.
        epsilon: with a privacy budget, text columns fall back to Faker text (no private text model yet).
        device: where the text model trains.
        config: text model hyperparameters.
    """
    real = pd.concat([train, holdout], ignore_index=True)
    actions, notes = text_actions(schema, real, overrides, epsilon=epsilon)
    out, metrics = synthetic.copy(), []
    pii = [c.name for c in schema.columns if c.pii not in (None, PIIKind.FREE_TEXT) and c.name in train]
    todo = [name for name, action in actions.items() if action == "synthesize"]
    train_cond = _conditions(encoder, train, schema) if todo else None
    synth_cond = _conditions(encoder, synthetic, schema) if todo else None
    device = resolve_device(device)
    for name, action in actions.items():
        if action == "drop":
            out = out.drop(columns=name, errors="ignore")
            continue
        if action == "fake":
            continue
        texts, found = scrub_column(train[name], train[pii])
        held, held_found = scrub_column(holdout[name], holdout[pii])
        cfg = config or TextConfig(seed=seed)
        model = TextModel(cfg, placeholders=PLACEHOLDERS, device=device).fit(texts, conditions=train_cond)
        sampled = model.sample(len(out), conditions=synth_cond, generator=make_generator(seed, device))
        metrics.append(_memory_metric(name, texts, held, sampled))
        metrics.append(_fidelity_metric(name, held, sampled))
        filled = fill(sampled, seed=seed, avoid=found | held_found)
        dtype = schema.column(name).dtype
        series = pd.Series(filled, index=out.index, dtype=object)
        out[name] = series.astype(dtype) if dtype in ("str", "string") else series
        notes.append(
            f"text column {name!r}: synthesised by a character GRU conditioned on the row, "
            f"{len(found)} personal values replaced by placeholders before training"
        )
        logger.info("text column %r synthesised (final loss %.3f)", name, model.history_[-1])
    return TextOutcome(out, notes, metrics, actions)


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


synthesize_text_task = task(name="synthesize-text", cache_policy=NO_CACHE)(synthesize_text)
