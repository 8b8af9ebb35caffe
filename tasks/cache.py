"""Content-addressed store of fitted models: the same data, schema and training request never trains twice.

Why our own store and not Prefect's result cache: a fitted model is tensors plus an encoder, and Prefect would pickle
them (torch tensors also hash differently in every process, so an INPUTS policy never hits across runs). Each model
already has a `save`/`load` that writes plain tensors and JSON, so an entry is a directory named by a sha256 key:

    $SYNTHGATE_CACHE (default ~/.cache/synthgate/models)/<key>/
        entry.json     model name, key, data hash, fit seconds, when
        encoder.json   TableEncoder.save
        model/         the model's own save (config.json, state.pt, meta.json)

An entry appears all at once (written to a temporary directory, then renamed), so a reader never sees half of one,
and a broken entry is a miss (logged and removed), never a failed run.

A run that leaves the store alone (`--no-cache`, or `auto`, which trains its candidates itself) keeps the same entry
beside its output instead, OUT.parquet -> OUT.model/, so `synthgate score` can find every published run's model; the
entry's key must match the output's metadata, so a model left by an earlier run of the same path is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from synthgate.models.base import GenerativeModel, resolve_device
from synthgate.models.encoders.table import TableEncoder
from synthgate.models.registry import load_model
from synthgate.schemas.request import RunRequest
from synthgate.schemas.table import TableSchema

logger = logging.getLogger(__name__)

CACHE_ENV = "SYNTHGATE_CACHE"
KEY_VERSION = 2  # bump when the entry layout, what the key covers or how a request trains changes (2: the vae and
# the gan encode continuous columns by mode, so their entries fitted on z-scores retrain)
# The request fields that change the fitted model. Sampling-only fields (rows, conditions, balance, output, report,
# thresholds) are left out on purpose: a new row count or a stricter gate reuses the model. The device is left out
# too: a model fitted on a GPU loads onto the CPU and back (tensors are saved on the CPU).
MODEL_FIELDS = ("model", "model_options", "seed", "holdout_fraction", "epsilon", "delta", "rare_category_k")


@dataclass
class CachedModel:
    """A fitted model and encoder read back from the store."""

    model: GenerativeModel
    encoder: TableEncoder
    name: str
    key: str
    fit_seconds: float


def cache_root(explicit: Path | str | None = None) -> Path:
    """The store's directory: `explicit`, else `$SYNTHGATE_CACHE`, else `~/.cache/synthgate/models`.

    Read once at the flow boundary, so a run never changes its mind half-way.
    """
    if explicit is not None:
        return Path(explicit).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "synthgate" / "models"


def model_key(data_digest: str, schema: TableSchema, request: RunRequest, *, version: str = "") -> str:
    """sha256 over what decides the fitted model: input content, schema, the training fields of the request.

    Args:
        data_digest: `tasks.ingest.data_hash` of the input table (content, not path: a renamed file still hits).
        schema: the resolved schema (it drives the split's protected columns and the encoder).
        request: the run request; only `MODEL_FIELDS` count.
        version: the synthgate version, so an upgrade with changed training code retrains.
    """
    fields = request.model_dump(mode="json", include=set(MODEL_FIELDS))
    payload = {
        "key_version": KEY_VERSION,
        "synthgate": version,
        "data": data_digest,
        "schema": schema.model_dump(mode="json"),
        "request": fields,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def write_entry(
    directory: Path,
    key: str,
    *,
    model: GenerativeModel,
    encoder: TableEncoder,
    name: str,
    fit_seconds: float,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write one entry's files into `directory` (a staging directory the caller renames into place)."""
    model.save(directory / "model")
    encoder.save(directory / "encoder.json")
    entry = {"model": name, "key": key, "fit_seconds": round(fit_seconds, 3), "created": time.time(), **(extra or {})}
    # entry.json last: its presence is what makes the entry valid
    (directory / "entry.json").write_text(json.dumps(entry, indent=2, default=str))


def model_beside(output: Path | str) -> Path:
    """Where a run that did not use the store keeps its model: OUT.parquet -> OUT.model/."""
    return Path(output).with_suffix(".model")


def save_beside(
    output: Path, key: str, *, model: GenerativeModel, encoder: TableEncoder, name: str, fit_seconds: float
) -> Path:
    """Store the run's model as an entry at `model_beside(output)`, replacing an earlier run's, atomically.

    Written to a temporary directory beside it and renamed into place; an earlier entry is first renamed away, so a
    reader sees the old entry, none, or the new one, never a mix.
    """
    final = model_beside(output)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    old = final.with_name(f".{final.name}.{os.getpid()}.old")
    try:
        write_entry(staging, key, model=model, encoder=encoder, name=name, fit_seconds=fit_seconds)
        if final.exists():
            os.rename(final, old)
        os.rename(staging, final)
    finally:
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
    logger.info("model stored beside the output: key=%s model=%s dir=%s", key[:16], name, final)
    return final


def load_beside(output: Path | str, key: str, *, device: str = "auto") -> CachedModel | None:
    """The model a run kept beside `output` (`save_beside`), or None when absent or left by a run with another key."""
    entry_file = model_beside(output) / "entry.json"
    if not entry_file.is_file() or json.loads(entry_file.read_text()).get("key") != key:
        return None
    return _read_entry(entry_file.parent, key, device)


def _read_entry(entry_dir: Path, key: str, device: str) -> CachedModel:
    entry = json.loads((entry_dir / "entry.json").read_text())
    model = load_model(entry["model"], entry_dir / "model", device=resolve_device(device))
    encoder = TableEncoder.load(entry_dir / "encoder.json")
    return CachedModel(model, encoder, entry["model"], key, float(entry.get("fit_seconds", 0)))


def load_cached(root: Path, key: str, *, device: str = "auto") -> CachedModel | None:
    """The stored model for `key` on `device`, or None on a miss (absent or unreadable entry)."""
    entry_dir = Path(root) / key
    entry_file = entry_dir / "entry.json"
    if not entry_file.exists():
        logger.info("model_cache=miss key=%s root=%s", key[:16], root)
        return None
    try:
        cached = _read_entry(entry_dir, key, device)
    except Exception as exc:  # a store written by an older version, a truncated file: retrain, don't fail the run
        logger.warning("model_cache=broken key=%s error=%r: removing the entry and retraining", key[:16], exc)
        shutil.rmtree(entry_dir, ignore_errors=True)
        return None
    logger.info("model_cache=hit key=%s model=%s root=%s", key[:16], cached.name, root)
    return cached


def save_cached(
    root: Path,
    key: str,
    *,
    model: GenerativeModel,
    encoder: TableEncoder,
    name: str,
    fit_seconds: float,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Store a fitted model and its encoder under `key`, atomically; an existing entry is kept as is.

    Returns:
        The entry's directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / key
    if (final / "entry.json").exists():
        return final
    staging = Path(tempfile.mkdtemp(prefix=f".{key[:16]}.", dir=root))
    try:
        write_entry(staging, key, model=model, encoder=encoder, name=name, fit_seconds=fit_seconds, extra=extra)
        try:
            os.rename(staging, final)
        except OSError:  # another run stored the same key first (rename onto a non-empty directory fails)
            logger.info("model_cache=exists key=%s", key[:16])
            return final
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    logger.info("model_cache=stored key=%s model=%s dir=%s", key[:16], name, final)
    return final


load_cached_task = task(name="load-cached-model", cache_policy=NO_CACHE)(load_cached)
save_cached_task = task(name="save-cached-model", cache_policy=NO_CACHE)(save_cached)
save_beside_task = task(name="save-model-beside-output", cache_policy=NO_CACHE)(save_beside)
