"""Get a fitted model for a run: reuse a cached one, train the named family, or let `auto` pick among families."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import Tensor

from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import config_class, normalization_for
from synthgate.schemas.metadata import CandidateScore
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema
from synthgate.tasks.cache import load_cached_task, save_cached_task
from synthgate.tasks.dp_preprocess import PreparedTraining
from synthgate.tasks.preprocess import encode_training_task
from synthgate.tasks.select import candidate_names, default_time_budget, evaluate_candidate_task, pick_best
from synthgate.tasks.steps import PLAIN, Steps
from synthgate.tasks.stop import stop_scope
from synthgate.tasks.train import FitResult, fit_model_task, on_device

logger = logging.getLogger(__name__)


@dataclass
class Encoded:
    """The training rows as a tensor and the encoder that made them (absent for `auto`: each candidate encodes)."""

    encoder: TableEncoder | None
    tensor: Tensor | None


@dataclass
class Trained:
    """The model a run samples from, and how it was obtained.

    Attributes:
        fitted: the model, its registry name, fit time and device.
        encoder: the encoder its samples decode with.
        model_cache: "hit" (training skipped), "miss" (trained and stored) or "off".
        candidates: with `auto`, every family's holdout score.
    """

    fitted: FitResult
    encoder: TableEncoder
    model_cache: str
    candidates: list[CandidateScore] = field(default_factory=list)


def encode_for_model(prepared: PreparedTraining, model: str, *, step: Steps = PLAIN) -> Encoded:
    """Encode the training rows the way `model` asks; a private run reuses the DP encoding built from its budget."""
    if model == "auto":  # each candidate encodes the rows the way its family asks (tasks/select.py)
        return Encoded(None, None)
    if prepared.private is not None:  # encoder state from public bounds or DP estimates, not the raw rows
        return Encoded(prepared.private.encoder, prepared.private.encoded)
    encoder, tensor = step(encode_training_task)(
        prepared.train, prepared.schema, normalization=normalization_for(model)
    )
    return Encoded(encoder, tensor)


def device_of(model: object) -> str:
    """Where a reused model's tensors live (models keep their `device`; CPU if one does not say)."""
    return str(getattr(model, "device_", None) or getattr(model, "device", None) or "cpu")


def train_candidates(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema, request: RunRequest, *, step: Steps = PLAIN
) -> Trained:
    """`--model auto`: fit every table family (in parallel when orchestrated) on the training rows, keep the most
    realistic that does not copy (tasks/select.py), all within one time budget."""
    names = candidate_names()
    budget = request.time_budget or default_time_budget(len(train), len(schema.modelled))
    with stop_scope():  # an error here (a signal, a cancellation) stops the candidates' fits at their next epoch
        outcomes = step.map(
            on_device(evaluate_candidate_task, request.device),
            names,
            train,
            holdout,
            schema,
            device=request.device,
            options=request.model_options,
            seed=request.seed,
            target=request.target,
            deadline=time.perf_counter() + budget,
        )
    best = pick_best(outcomes)
    logger.info("auto: kept %s (score %.3f) of %s", best.name, best.score, ", ".join(names))
    fitted = FitResult(model=best.model, name=best.name, seconds=best.fit_seconds, device=best.device)
    return Trained(fitted, best.encoder, "off", [c.as_score() for c in outcomes])


def anchored(options: dict[str, Any], model: str, target: str | None, prepared: PreparedTraining) -> dict[str, Any]:
    """`options` with the run's target as the model's `anchor` when its family takes one (the marginal family then
    models every column given the target, which keeps what predicts it) and the options do not set it already."""
    takes_anchor = "anchor" in config_class(model).__dataclass_fields__
    modelled = {c.name for c in prepared.schema.modelled}
    if target is None or "anchor" in options or not takes_anchor or target not in modelled:
        return options
    return {**options, "anchor": target}


def train_or_reuse(
    encoded: Encoded,
    prepared: PreparedTraining,
    holdout: pd.DataFrame,
    request: RunRequest,
    *,
    cache: tuple[Path, str] | None,
    step: Steps = PLAIN,
) -> Trained:
    """The run's model: `auto` picks among families; else a cache hit under `cache` = (root, key), or a fresh fit.

    Args:
        encoded: the training tensor and encoder (`encode_for_model`).
        prepared: the protected training rows and schema, and the DP budget if any.
        holdout: held-out rows (`auto` scores candidates on them).
        request: the run request (model, options, seed, device).
        cache: the model store and this run's key, or None to neither read nor write it.
        step: how tasks are called.
    """
    if request.model == "auto":
        return train_candidates(prepared.train, holdout, prepared.schema, request, step=step)
    if cache is not None:
        cached = step(load_cached_task)(*cache, device=request.device)
        if cached is not None:
            fitted = FitResult(model=cached.model, name=cached.name, seconds=0.0, device=device_of(cached.model))
            return Trained(fitted, cached.encoder, "hit")
    assert encoded.encoder is not None and encoded.tensor is not None  # only auto leaves them unset
    fitted = step(on_device(fit_model_task, request.device))(
        encoded.tensor,
        model=prepared.model_name(request.model),  # gmm with a budget trains the private gmm_dp
        spans=encoded.encoder.spans_,
        device=request.device,
        options=anchored(  # plus the DP budget, if any, and the target as anchor where the family takes one
            prepared.model_options(request.model_options), prepared.model_name(request.model), request.target, prepared
        ),
        seed=request.seed,
    )
    if cache is None:
        return Trained(fitted, encoded.encoder, "off")
    step(save_cached_task)(
        *cache, model=fitted.model, encoder=encoded.encoder, name=fitted.name, fit_seconds=fitted.seconds
    )
    return Trained(fitted, encoded.encoder, "miss")
