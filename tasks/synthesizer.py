"""`Synthesizer`: one table's generative model, fitted and sampled in memory (scikit-learn's shape).

It runs the run's own steps (schema, validation, protection, the DP budget split, encoding, `auto`'s selection) on a
DataFrame, without Prefect and without gates: there is no holdout to judge against, so what it returns has not been
checked for privacy. `synthgate.Synthesizer` (flows/api.py) and `synthgate database` (tasks/relational.py) use it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd

from synthgate.schemas.errors import InvalidInputError, NotFittedError
from synthgate.schemas.table import TableSchema

SYNTHESIZER_FILE = "synthesizer.json"


class Synthesizer:
    """A generative model of one table, fitted and sampled in memory (scikit-learn's shape).

    Args:
        model: gmm, vae, gan, autoencoder, or auto (each family fitted, the best on a 20% validation split kept).
        time_budget: with auto, the seconds its candidates share, tried one after another cheapest first (default
            scaled to the table, as for `synthgate run`).
        seed: seeds the fit and, unless `sample` is given its own, the sequence of draws.
        device: auto, cpu, cuda or cuda:N.
        model_options: hyperparameters passed to the model.
        epsilon: a differential-privacy budget for the fit (models with a private path).
        delta: the DP delta; default 1/n^1.1 of the training rows.
        rare_category_k: categories with fewer rows become one rare bucket.
        name: the table's name in the schema.

    Attributes:
        schema_: the schema fitted (after rare-category protection).
        model_: the fitted generative model.
        encoder_: the fitted table encoder.
        model_name_: the registry name of the fitted model (`gmm_dp` for a private gmm).
        epsilon_: the privacy budget spent, or None.
        candidates_: with auto, every family tried, its validation scores and fit seconds (else empty).
    """

    def __init__(
        self,
        model: str = "gmm",
        *,
        seed: int = 0,
        device: str = "auto",
        model_options: dict[str, Any] | None = None,
        epsilon: float | None = None,
        delta: float | None = None,
        rare_category_k: int | None = None,
        name: str = "table",
        time_budget: float | None = None,
    ):
        self.model = model
        self.time_budget = time_budget
        self.seed = seed
        self.device = device
        self.model_options = model_options
        self.epsilon = epsilon
        self.delta = delta
        self.rare_category_k = rare_category_k
        self.name = name

    def fit(self, df: pd.DataFrame) -> Self:
        """Infer and check the schema, protect the rows, encode them and fit the model; refitting replaces all state.

        Raises:
            InvalidInputError: an unknown model, or a table that cannot be modelled.
            ValidationFailedError: the table breaks its own inferred schema (e.g. mixed types in a column).
        """
        from synthgate.tasks.dp_preprocess import prepare_training
        from synthgate.tasks.plan import check_model_choice
        from synthgate.tasks.preprocess import resolve_schema
        from synthgate.tasks.validate import validate_table

        check_model_choice(self.model)
        schema = resolve_schema(df, name=self.name)
        validate_table(df, schema, source="the DataFrame passed to Synthesizer.fit")
        prepared = prepare_training(
            df.reset_index(drop=True),
            schema,
            model=self.model,
            epsilon=self.epsilon,
            delta=self.delta,
            rare_k=self.rare_category_k,
            public_schema=False,
            seed=self.seed,
        )
        self.candidates_: list = []
        self.model_, self.encoder_, self.model_name_ = self._fit_model(prepared, prepared.model or self.model)
        self.schema_ = prepared.schema
        self.epsilon_ = prepared.spent(self.model_)[0]
        self._rng = np.random.default_rng(self.seed)
        self._pii_real = df[[c.name for c in schema.pii_columns if c.name in df]].copy()  # memory only, never saved
        return self

    def _fit_model(self, prepared: Any, model: str) -> tuple[Any, Any, str]:
        from synthgate.tasks.train import fit_model
        from synthgate.tasks.training import encode_for_model

        options = dict(self.model_options or {})
        if model == "auto":  # each candidate carves its own validation split from the training rows
            from synthgate.tasks.select import (
                candidate_names,
                cheap_first,
                default_time_budget,
                evaluate_in_series,
                pick_best,
            )

            train, schema = prepared.train, prepared.schema
            budget = (
                self.time_budget
                if self.time_budget is not None
                else default_time_budget(len(train), len(schema.modelled))
            )
            outcomes = evaluate_in_series(cheap_first(candidate_names()), train, schema, budget=budget,
                                          device=self.device, options=options, seed=self.seed)  # fmt: skip
            best = pick_best(outcomes)
            self.candidates_ = [c.as_score() for c in outcomes]
            return best.model, best.encoder, best.name
        encoded = encode_for_model(prepared, model)
        fitted = fit_model(
            encoded.tensor,
            model=prepared.model_name(model),
            spans=encoded.encoder.spans_,
            device=self.device,
            options=prepared.model_options(options),
            seed=self.seed,
        )
        return fitted.model, encoded.encoder, fitted.name

    def sample(self, n: int, conditions: dict[str, Any] | None = None, *, seed: int | None = None) -> pd.DataFrame:
        """Draw `n` rows with the source's columns and dtypes; `conditions` fixes column == value on every row.

        Args:
            n: rows to draw.
            conditions: e.g. `{"species": "Adelie"}`.
            seed: this draw's seed; by default each call takes the next seed from the fit's seed, so two calls
                return different rows and a refit with the same seed repeats the sequence.

        Raises:
            NotFittedError: `fit` or `load` was not called.
        """
        if not hasattr(self, "model_"):
            raise NotFittedError("this Synthesizer is not fitted yet; call fit(df) or Synthesizer.load(path) first")
        from synthgate.tasks.protect import complete_output
        from synthgate.tasks.sample import sample_rows

        if n <= 0:
            raise InvalidInputError(f"sample needs a positive number of rows, got {n}")
        draw_seed = int(self._rng.integers(2**31)) if seed is None else seed
        rows = sample_rows(self.model_, self.encoder_, n, seed=draw_seed, conditions=conditions)
        return complete_output(rows, self.schema_, seed=draw_seed, real=self._pii_real)

    def save(self, path: str | Path) -> Path:
        """Write the fitted model, encoder and schema to the folder `path` (replaced atomically; no pickles).

        Returns:
            The folder.
        """
        if not hasattr(self, "model_"):
            raise NotFittedError("nothing to save: call fit(df) first")
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
        try:
            self.model_.save(staging / "model")
            self.encoder_.save(staging / "encoder.json")
            state = {
                "model": self.model,
                "model_name": self.model_name_,
                "seed": self.seed,
                "device": self.device,
                "name": self.name,
                "epsilon_spent": self.epsilon_,
                "schema": self.schema_.model_dump(mode="json"),
            }
            (staging / SYNTHESIZER_FILE).write_text(json.dumps(state, indent=2, default=str))
            if final.exists():
                shutil.rmtree(final)
            os.rename(staging, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu") -> Self:
        """Read a folder written by `save`; the model's tensors go to `device`."""
        from synthgate.models.encoders.table import TableEncoder
        from synthgate.models.registry import load_model

        folder = Path(path)
        if not (folder / SYNTHESIZER_FILE).exists():
            raise InvalidInputError(f"{folder}: no {SYNTHESIZER_FILE}; pass a folder written by Synthesizer.save")
        state = json.loads((folder / SYNTHESIZER_FILE).read_text())
        synth = cls(state["model"], seed=state["seed"], device=device, name=state["name"])
        synth.model_ = load_model(state["model_name"], folder / "model", device=device)
        synth.encoder_ = TableEncoder.load(folder / "encoder.json")
        synth.model_name_ = state["model_name"]
        synth.schema_ = TableSchema.model_validate(state["schema"])
        synth.epsilon_ = state["epsilon_spent"]
        synth._rng = np.random.default_rng(synth.seed)
        synth._pii_real = None
        return synth
