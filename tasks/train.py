"""Fit the requested generative model on the encoded training rows (the GPU task)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch
from prefect import task
from prefect.cache_policies import NO_CACHE
from torch import Tensor

from synthgate.models.base import GenerativeModel, resolve_device
from synthgate.models.encoders.table import Span
from synthgate.models.registry import MODELS, build_model, model_names
from synthgate.tasks.stop import stoppable

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    model: GenerativeModel
    name: str
    seconds: float
    device: str


def _log_progress(event: Any) -> None:
    logger.info("train: %s", event)


def fit_model(
    encoded: Tensor,
    *,
    model: str,
    spans: list[Span],
    device: str = "auto",
    options: dict[str, Any] | None = None,
    seed: int = 0,
) -> FitResult:
    """Build and fit model `model`; plain Python, so tests call it without Prefect."""
    torch_device = resolve_device(device)
    options = dict(options or {})
    if model in model_names() and "seed" in MODELS[model][1].__dataclass_fields__:
        options.setdefault("seed", seed)
    torch.manual_seed(seed)  # weight initialisation of neural models
    instance = build_model(model, spans=spans, device=torch_device, options=options)
    start = time.perf_counter()
    instance.fit(encoded, progress=stoppable(_log_progress))  # a stopped run ends at the next epoch
    seconds = time.perf_counter() - start
    logger.info(
        "train: %s fitted on %d rows x %d features in %.2f s (%s)", model, *encoded.shape, seconds, torch_device
    )
    return FitResult(model=instance, name=model, seconds=seconds, device=str(torch_device))


fit_model_task = task(name="fit-model", tags=["gpu"], cache_policy=NO_CACHE)(fit_model)
