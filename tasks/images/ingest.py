"""Read image sets from folders, `.npz`, Parquet with image bytes, or `dataset:digits`, without judging them.

Ingest reads every file it can and records, per file, either its pixels or why it could not be read; `validate`
then judges the whole set at once so a user sees every broken file in one message instead of fixing them one by one.
Pixels are scaled to [0, 1] float32, (H, W, C) per image; nothing is resized unless the caller asks.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.schemas.errors import InvalidInputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}
DATASETS = ("digits",)


@dataclass
class ImageRecord:
    """One image as read: where it came from, its class, and its (H, W, C) pixels in [0, 1] or the read error."""

    source: str
    label: str
    pixels: np.ndarray | None = None
    error: str | None = None


@dataclass
class RawImages:
    """Everything ingest found; `classes` includes classes with no readable image (validate reports those)."""

    source: str
    classes: list[str]
    records: list[ImageRecord]
    notes: list[str] = field(default_factory=list)


def class_sort_key(name: str) -> tuple[int, int | str]:
    """Numeric class names sort as numbers ("2" before "10"), the rest alphabetically after them."""
    return (0, int(name)) if name.lstrip("-").isdigit() else (1, name)


def decode_image(data: bytes | Path, resize: tuple[int, int] | None = None) -> np.ndarray:
    """PNG/JPEG bytes or file -> (H, W, C) float32 in [0, 1], C = 1 (grayscale) or 3 (colour; alpha dropped)."""
    with Image.open(io.BytesIO(data) if isinstance(data, bytes) else data) as img:
        img.load()  # forces a full decode: truncated files fail here, not later
        mode = "L" if img.mode in ("1", "L", "LA", "I", "I;16", "I;16B", "F") else "RGB"
        img = img.convert(mode)
        if resize is not None:
            img = img.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
        arr = np.asarray(img, dtype=np.float32) / 255.0
    return arr[:, :, None] if arr.ndim == 2 else arr


def _resize_array(pixels: np.ndarray, resize: tuple[int, int] | None) -> np.ndarray:
    if resize is None or pixels.shape[:2] == tuple(resize):
        return pixels
    channels = [
        np.asarray(Image.fromarray(pixels[:, :, c]).resize((resize[1], resize[0]), Image.Resampling.BILINEAR))
        for c in range(pixels.shape[2])
    ]
    return np.stack(channels, axis=2).astype(np.float32)


def _read_folder(root: Path, resize: tuple[int, int] | None) -> RawImages:
    class_dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: class_sort_key(p.name)
    )
    if not class_dirs:
        raise InvalidInputError(f"{root}: no class sub-folders found; lay images out as {root}/CLASS_NAME/*.png")
    records, skipped = [], 0
    for class_dir in class_dirs:
        for path in sorted(class_dir.iterdir()):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                skipped += 1
                continue
            try:
                records.append(ImageRecord(str(path), class_dir.name, decode_image(path, resize)))
            except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
                records.append(ImageRecord(str(path), class_dir.name, error=f"{type(exc).__name__}: {exc}"))
    notes = [f"{skipped} file(s) without a .png/.jpg/.jpeg suffix were ignored"] if skipped else []
    return RawImages(str(root), [d.name for d in class_dirs], records, notes)


def _arrays_to_records(
    source: str, images: np.ndarray, labels: np.ndarray, resize: tuple[int, int] | None, scale: float | None
) -> RawImages:
    """(n, H, W) or (n, H, W, C) arrays -> records; integer pixels are divided by `scale` (255 unless given)."""
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise InvalidInputError(
            f"{source}: images must be (n, H, W) or (n, H, W, C) with C in 1 or 3, got shape {images.shape}"
        )
    if len(images) != len(labels):
        raise InvalidInputError(f"{source}: {len(images)} images but {len(labels)} labels")
    if scale is None:
        scale = 255.0 if np.issubdtype(images.dtype, np.integer) else 1.0
    pixels = images.astype(np.float32) / scale
    names = [str(v) for v in labels.tolist()]
    classes = sorted(set(names), key=class_sort_key)
    records = [ImageRecord(f"{source}[{i}]", names[i], _resize_array(pixels[i], resize)) for i in range(len(pixels))]
    return RawImages(source, classes, records)


def _read_npz(path: Path, resize: tuple[int, int] | None) -> RawImages:
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            image_key = next((k for k in ("images", "x", "X") if k in keys), None)
            label_key = next((k for k in ("labels", "y", "targets") if k in keys), None)
            if image_key is None or label_key is None:
                raise InvalidInputError(
                    f"{path}: expected arrays 'images' and 'labels' in the .npz, found {sorted(keys)}"
                )
            images, labels = data[image_key], data[label_key]
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npz file ({exc})") from exc
    return _arrays_to_records(str(path), images, labels, resize, None)


def _read_parquet(path: Path, resize: tuple[int, int] | None) -> RawImages:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InvalidInputError(f"{path}: not a readable Parquet file ({exc})") from exc
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type)]
    image_col = "image" if "image" in binary else (binary[0] if binary else None)
    others = [n for n in table.column_names if n != image_col]
    label_col = "label" if "label" in others else (others[0] if others else None)
    if image_col is None or label_col is None:
        raise InvalidInputError(
            f"{path}: needs a binary column of PNG/JPEG bytes (e.g. 'image') and a label column (e.g. 'label'); "
            f"found {table.column_names}"
        )
    images, labels = table.column(image_col).to_pylist(), [str(v) for v in table.column(label_col).to_pylist()]
    records = []
    for i, (data, label) in enumerate(zip(images, labels, strict=True)):
        where = f"{path} row {i}"
        try:
            if data is None:
                raise ValueError("missing image bytes")
            records.append(ImageRecord(where, label, decode_image(data, resize)))
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            records.append(ImageRecord(where, label, error=f"{type(exc).__name__}: {exc}"))
    return RawImages(str(path), sorted(set(labels), key=class_sort_key), records)


def _read_dataset(name: str, resize: tuple[int, int] | None) -> RawImages:
    if name != "digits":
        raise InvalidInputError(f"unknown dataset {name!r}; shipped image datasets: {', '.join(DATASETS)}")
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # Digits pixels are counts 0..16 (4x4 blocks of a 32x32 bitmap), hence the scale.
    return _arrays_to_records("dataset:digits", bunch.images, bunch.target, resize, scale=16.0)


def ingest_images(source: str | Path, *, resize: tuple[int, int] | None = None) -> RawImages:
    """Read an image set from a folder of class sub-folders, `.npz`, Parquet with image bytes, or `dataset:NAME`.

    Args:
        source: the path or `dataset:digits`.
        resize: (height, width) to resize every image to; by default images keep their size (validate then insists
            they all share one).

    Raises:
        InvalidInputError: the source does not exist or is not one of the accepted layouts. Unreadable individual
            images do not raise here: they are recorded, and `validate_images` lists them all.
    """
    text = str(source)
    if text.startswith("dataset:"):
        raw = _read_dataset(text.split(":", 1)[1], resize)
    else:
        path = Path(text)
        if not path.exists():
            raise InvalidInputError(f"{path}: no such file or folder")
        if path.is_dir():
            raw = _read_folder(path, resize)
        elif path.suffix.lower() == ".npz":
            raw = _read_npz(path, resize)
        elif path.suffix.lower() == ".parquet":
            raw = _read_parquet(path, resize)
        else:
            raise InvalidInputError(
                f"{path}: unsupported input; give a folder of class sub-folders, a .npz, a .parquet or dataset:digits"
            )
    log.info("ingested %d image record(s) in %d class(es) from %s", len(raw.records), len(raw.classes), raw.source)
    return raw


ingest_images_task = task(name="ingest-images", cache_policy=NO_CACHE)(ingest_images)
