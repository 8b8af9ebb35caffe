"""Publish synthetic images as Parquet (PNG bytes + label), atomically, only when the gates passed.

The file explains itself: the run metadata (request, schema, model, seed, data hash, metrics, verdicts) is JSON under
the `synthgate` key of the Parquet key-value metadata, so `synthgate report OUT.parquet` needs nothing else. Writing to
a temporary file in the same folder and `os.replace`-ing it means a reader never sees half a file and a failed run
never leaves one.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.schemas.errors import GateRefusedError, InvalidInputError
from synthgate.schemas.gates import GateResult
from synthgate.schemas.metadata import METADATA_KEY

log = logging.getLogger(__name__)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """(C, H, W) floats in [0, 1] -> (H, W) or (H, W, 3) uint8, rounded (PNG stores 8 bits per channel)."""
    arr = np.clip(np.rint(np.asarray(image) * 255.0), 0, 255).astype(np.uint8)
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)


def encode_png(image: np.ndarray) -> bytes:
    """(C, H, W) image in [0, 1] -> PNG bytes (grayscale for one channel, RGB for three)."""
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def images_table(images: np.ndarray, labels: np.ndarray, classes: list[str], metadata: dict[str, Any]) -> pa.Table:
    """A Parquet-ready table: `image` (PNG bytes), `label` (class name), with `metadata` as JSON under `synthgate`."""
    table = pa.table(
        {
            "image": pa.array([encode_png(img) for img in images], type=pa.binary()),
            "label": pa.array([classes[k] for k in labels], type=pa.string()),
        }
    )
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, default=str).encode()})


def write_atomic(table: pa.Table, output: Path) -> Path:
    """Write `table` to `output` through a temporary file in the same folder and `os.replace`."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a published file gets the usual permissions
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return output


def publish_images(
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    output: Path,
    gates: GateResult,
    metadata: dict[str, Any],
    *,
    report_path: str | None = None,
) -> Path:
    """Write the synthetic set to `output` if and only if `gates` passed.

    Raises:
        GateRefusedError: a gate failed; nothing is written (the flow has already written the report).
    """
    if not gates.passed:
        raise GateRefusedError(gates, report_path)
    path = write_atomic(images_table(images, labels, classes, metadata), output)
    log.info("published %d images to %s", len(labels), path)
    return path


def read_images_parquet(path: Path) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Read a published file back: (n, C, H, W) float images in [0, 1], class names, and the run metadata."""
    from synthgate.tasks.images.ingest import decode_image

    path = Path(path)
    if not path.exists():
        raise InvalidInputError(f"{path}: no such file")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    images = np.stack([decode_image(b).transpose(2, 0, 1) for b in table.column("image").to_pylist()])
    return images, table.column("label").to_pylist(), json.loads(raw) if raw else {}


publish_images_task = task(name="publish-images", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[1, 5])(
    publish_images
)
