"""`--model auto`: fit every candidate family, score each on the holdout, keep the best.

Each candidate is one mapped Prefect task (tagged `gpu`, like training), so candidates run in parallel and each
shows up in the run with its own time and state. The score is the mean of column shapes and pair trends against the
holdout; the privacy gate still judges the winner afterwards, so a candidate that copies rows cannot win publication.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import GenerativeModel
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import MODELS, model_names, normalization_for
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.metadata import CandidateScore
from synthgate.schemas.table import TableSchema
from synthgate.tasks.fidelity import column_shapes, pair_trends
from synthgate.tasks.preprocess import encode_training
from synthgate.tasks.sample import sample_rows
from synthgate.tasks.train import fit_model

logger = logging.getLogger(__name__)

# Rows drawn to score a candidate: stable scores, cheap next to training (docs/decisions.md#auto-score).
SCORE_ROWS = 5_000


@dataclass
class Candidate:
    """One tried model: the fitted model and encoder (None on failure), its holdout score and its cost."""

    name: str
    model: GenerativeModel | None
    encoder: TableEncoder | None
    score: float | None
    fit_seconds: float
    device: str = "cpu"
    error: str | None = None

    def as_score(self) -> CandidateScore:
        return CandidateScore(
            model=self.name, score=self.score, fit_seconds=round(self.fit_seconds, 3), error=self.error
        )


def options_for(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The subset of shared options a family understands (`epochs` means nothing to the GMM)."""
    known = {f.name for f in fields(MODELS[name][1])}
    return {k: v for k, v in options.items() if k in known}


def evaluate_candidate(
    name: str,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    schema: TableSchema,
    *,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    seed: int = 0,
) -> Candidate:
    """Fit `name` on `train` and score its samples against `holdout`; failures become a scored-None candidate."""
    start = time.perf_counter()
    try:
        encoder, encoded = encode_training(train, schema, normalization=normalization_for(name))
        fitted = fit_model(
            encoded,
            model=name,
            spans=encoder.spans_,
            device=device,
            options=options_for(name, options or {}),
            seed=seed,
        )
        synthetic = sample_rows(fitted.model, encoder, min(SCORE_ROWS, max(len(train), len(holdout))), seed=seed)
        parts = [column_shapes(holdout, synthetic, schema).value, pair_trends(holdout, synthetic, schema).value]
        known = [p for p in parts if p is not None]
        score = sum(known) / len(known) if known else None
        logger.info(
            "auto: %s scored %s in %.1f s", name, f"{score:.3f}" if score is not None else "n/a", fitted.seconds
        )
        return Candidate(name, fitted.model, encoder, score, fitted.seconds, fitted.device)
    except Exception as exc:  # one failing family must not sink the others
        logger.warning("auto: %s failed: %s", name, exc)
        return Candidate(name, None, None, None, time.perf_counter() - start, error=f"{type(exc).__name__}: {exc}")


def pick_best(candidates: list[Candidate]) -> Candidate:
    """The highest-scoring candidate; ties go to the faster one."""
    scored = [c for c in candidates if c.score is not None]
    if not scored:
        errors = "; ".join(f"{c.name}: {c.error}" for c in candidates)
        raise InvalidInputError(f"--model auto: no candidate could be fitted ({errors})")
    return max(scored, key=lambda c: (c.score, -c.fit_seconds))


FAMILIES = ("gmm", "vae", "gan", "autoencoder")  # the table families; variants such as gmm_dp need a budget


def candidate_names() -> list[str]:
    """The table families `auto` tries (image models and private variants are not candidates)."""
    available = set(model_names())
    return [n for n in FAMILIES if n in available]


evaluate_candidate_task = task(name="auto-candidate", tags=["gpu"], cache_policy=NO_CACHE)(evaluate_candidate)
