"""Ingest and validation of image sets: every accepted layout reads, every broken input is refused with its file named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from synthgate.schemas.errors import InvalidInputError, ValidationFailedError
from synthgate.tasks.images.ingest import ingest_images
from synthgate.tasks.images.publish import encode_png
from synthgate.tasks.images.validate import split_images, validate_images


def _write_png(path: Path, size: tuple[int, int] = (12, 10), mode: str = "L", value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[0], size[1]) if mode == "L" else (size[0], size[1], 3)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode).save(path)


def _folder(root: Path, per_class: int = 3, size: tuple[int, int] = (12, 10), mode: str = "L") -> Path:
    for cls in ("cat", "dog"):
        for i in range(per_class):
            _write_png(root / cls / f"{i}.png", size, mode, value=i + 10 * len(cls))
    return root


def test_folder_of_pngs_reads_any_size_and_keeps_pixels(tmp_path):
    # Arrange
    root = _folder(tmp_path / "imgs", size=(12, 10), mode="RGB")
    expected = np.asarray(Image.open(root / "dog" / "2.png"), dtype=np.float32) / 255

    # Act
    data = validate_images(ingest_images(root), min_per_class=2)

    # Assert
    assert data.images.shape == (6, 3, 12, 10)
    assert data.schema.classes == ["cat", "dog"] and data.schema.counts == {"cat": 3, "dog": 3}
    np.testing.assert_allclose(data.images[5].transpose(1, 2, 0), expected)


def test_digits_dataset_is_scaled_to_unit_range_with_ten_classes():
    # Act
    data = validate_images(ingest_images("dataset:digits"))

    # Assert
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.schema.n_classes == 10
    assert data.images.min() == 0.0 and data.images.max() == 1.0


def test_corrupt_file_is_refused_and_named(tmp_path):
    # Arrange
    root = _folder(tmp_path / "imgs")
    bad = root / "cat" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")

    # Act
    with pytest.raises(ValidationFailedError) as info:
        validate_images(ingest_images(root), min_per_class=2)

    # Assert
    assert str(bad) in str(info.value)
    assert [f.rule for f in info.value.failures] == ["readable_image"]


def test_mixed_sizes_are_refused_naming_the_odd_file(tmp_path):
    # Arrange
    root = _folder(tmp_path / "imgs", size=(12, 10))
    odd = root / "dog" / "odd.png"
    _write_png(odd, size=(16, 16))

    # Act
    with pytest.raises(ValidationFailedError) as info:
        validate_images(ingest_images(root), min_per_class=2)

    # Assert
    message = str(info.value)
    assert str(odd) in message and "16x16" in message and "--resize 12x10" in message


def test_resize_on_request_accepts_mixed_sizes(tmp_path):
    # Arrange
    root = _folder(tmp_path / "imgs", size=(12, 10))
    _write_png(root / "dog" / "odd.png", size=(16, 16))

    # Act
    data = validate_images(ingest_images(root, resize=(8, 8)), min_per_class=2)

    # Assert: every image at the asked size, labels kept, and the resize is the image's own (not a crop or a blank)
    assert data.images.shape == (7, 1, 8, 8)
    assert data.schema.classes == ["cat", "dog"] and np.bincount(data.labels).tolist() == [3, 4]
    expected = Image.open(root / "dog" / "odd.png").resize((8, 8), Image.Resampling.BILINEAR)
    odd = data.images[next(i for i, s in enumerate(data.sources) if s.endswith("odd.png")), 0]
    assert np.abs(odd - np.asarray(expected, dtype=np.float32) / 255).mean() < 0.05


def test_every_failure_is_listed_at_once(tmp_path):
    # Arrange: mixed channels, an empty class and a class with too few images.
    root = _folder(tmp_path / "imgs", per_class=3)
    _write_png(root / "cat" / "colour.png", mode="RGB")
    (root / "empty").mkdir()

    # Act
    with pytest.raises(ValidationFailedError) as info:
        validate_images(ingest_images(root), min_per_class=4)

    # Assert
    rules = {f.rule for f in info.value.failures}
    assert rules == {"same_channels", "non_empty_class", "min_images_per_class"}
    assert "colour.png" in str(info.value)


def test_npz_and_parquet_inputs(tmp_path):
    # Arrange
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 9, 7), dtype=np.uint8)
    labels = np.repeat([3, 5], 10)
    np.savez(tmp_path / "set.npz", images=images, labels=labels)
    table = pa.table({"image": [encode_png(img[None] / 255.0) for img in images], "label": labels.astype(str)})
    pq.write_table(table, tmp_path / "set.parquet")

    # Act
    from_npz = validate_images(ingest_images(tmp_path / "set.npz"))
    from_parquet = validate_images(ingest_images(tmp_path / "set.parquet"))

    # Assert
    assert from_npz.schema.classes == ["3", "5"] == from_parquet.schema.classes
    np.testing.assert_allclose(from_npz.images, from_parquet.images)
    np.testing.assert_allclose(from_npz.images[:, 0], images / 255.0)


def test_unknown_inputs_fail_clearly(tmp_path):
    # Act / Assert
    with pytest.raises(InvalidInputError, match="no such file"):
        ingest_images(tmp_path / "missing")
    with pytest.raises(InvalidInputError, match="unknown dataset"):
        ingest_images("dataset:mnist")


def test_split_is_stratified_and_disjoint():
    # Arrange
    data = validate_images(ingest_images("dataset:digits"))

    # Act
    train, holdout = split_images(data, holdout_fraction=0.2, seed=1)

    # Assert
    assert len(train) + len(holdout) == len(data)
    assert not set(train.sources) & set(holdout.sources)
    assert all(0.15 < holdout.schema.counts[c] / data.schema.counts[c] < 0.25 for c in data.schema.classes)
