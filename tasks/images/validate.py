"""Judge an ingested image set before anything trains on it, and split it into train and holdout.

Every problem is collected and raised once as `ValidationFailedError`, naming the files, the rule and the fix:
unreadable files, mixed sizes, mixed channel counts, pixel values outside [0, 1], empty classes, and classes too small
to train on while keeping a holdout share for the gates.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.schemas.errors import InvalidInputError, ValidationFailedError, ValidationFailure
from synthgate.schemas.image import ImageSchema
from synthgate.tasks.images.ingest import RawImages


@dataclass
class ImageData:
    """A validated image set: (n, C, H, W) float32 pixels in [0, 1], (n,) int64 labels into `schema.classes`."""

    images: np.ndarray
    labels: np.ndarray
    sources: list[str]
    schema: ImageSchema

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: np.ndarray) -> ImageData:
        counts = np.bincount(self.labels[idx], minlength=self.schema.n_classes)
        schema = self.schema.model_copy(update={"counts": dict(zip(self.schema.classes, counts.tolist(), strict=True))})
        return ImageData(self.images[idx], self.labels[idx], [self.sources[i] for i in idx], schema)

    def content_hash(self) -> str:
        """sha256 of pixels and labels: names a dataset in metadata and cache keys, whatever file it came from."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images).tobytes())
        digest.update(np.ascontiguousarray(self.labels).tobytes())
        digest.update("\x00".join(self.schema.classes).encode())
        return digest.hexdigest()


def _minority(records, key, majority: str) -> list[str]:
    """The images whose `key` differs from the majority's, each with its own value, so the user sees which to fix."""
    return [f"{r.source} ({key(r)})" for r in records if key(r) != majority]


def _failure(rule: str, offenders: list[str], detail: str, fix: str, column: str | None = None) -> ValidationFailure:
    """A broken rule with how many items break it and the first ten of them."""
    return ValidationFailure(
        column=column, rule=rule, count=len(offenders), examples=offenders[:10], detail=detail, fix=fix
    )


def validate_images(raw: RawImages, *, min_per_class: int = 10) -> ImageData:
    """Check the set and stack it into arrays; raise one `ValidationFailedError` listing every broken rule.

    Args:
        raw: what `ingest_images` read.
        min_per_class: fewest readable images a class needs: the model needs examples and the holdout needs at
            least one image of every class for the gates to judge per-class fidelity.
    """
    failures: list[ValidationFailure] = []
    bad = [r for r in raw.records if r.error is not None]
    good = [r for r in raw.records if r.error is None]
    if bad:
        failures.append(
            _failure(
                "readable_image",
                [r.source for r in bad],
                f"cannot decode {bad[0].source}: {bad[0].error}",
                "delete or re-export these files as PNG/JPEG; nothing was trained",
            )
        )
    sizes = Counter(r.pixels.shape[:2] for r in good)
    if len(sizes) > 1:
        (h, w), _ = sizes.most_common(1)[0]
        failures.append(
            _failure(
                "same_size",
                _minority(good, lambda r: f"{r.pixels.shape[0]}x{r.pixels.shape[1]}", f"{h}x{w}"),
                f"images have {len(sizes)} sizes (HxW): {dict((f'{a}x{b}', n) for (a, b), n in sizes.items())}; "
                f"most are {h}x{w}",
                f"resize them yourself or pass --resize {h}x{w}",
            )
        )
    channels = Counter(r.pixels.shape[2] for r in good)
    if len(channels) > 1:
        majority = channels.most_common(1)[0][0]
        failures.append(
            _failure(
                "same_channels",
                _minority(good, lambda r: f"{r.pixels.shape[2]} channel(s)", f"{majority} channel(s)"),
                f"grayscale and colour images are mixed: {dict(channels)}",
                "convert every image to grayscale or every image to RGB",
            )
        )
    out_of_range = [r.source for r in good if float(r.pixels.min()) < 0 or float(r.pixels.max()) > 1]
    if out_of_range:
        failures.append(
            _failure(
                "pixel_range",
                out_of_range,
                "float pixels must lie in [0, 1]",
                "store uint8 pixels (0-255) or floats scaled to [0, 1]",
            )
        )
    per_class = Counter(r.label for r in good)
    empty = [c for c in raw.classes if per_class[c] == 0]
    if empty:
        failures.append(
            _failure(
                "non_empty_class",
                empty,
                "these classes have no readable image",
                "add images to these class folders or remove the folders",
                column="label",
            )
        )
    small = [f"{c} ({per_class[c]})" for c in raw.classes if 0 < per_class[c] < min_per_class]
    if small:
        failures.append(
            _failure(
                "min_images_per_class",
                small,
                f"a class needs at least {min_per_class} images to train on and to keep a holdout share",
                "add images to these classes, merge or drop them, or lower min_per_class",
                column="label",
            )
        )
    if not good and not failures:
        failures.append(ValidationFailure(None, "non_empty", 0, [], "no images found", "point --input at images"))
    if failures:
        raise ValidationFailedError(raw.source, failures)

    classes = [c for c in raw.classes if per_class[c] > 0]
    index = {c: i for i, c in enumerate(classes)}
    images = np.stack([r.pixels.transpose(2, 0, 1) for r in good]).astype(np.float32)  # (n, C, H, W)
    labels = np.array([index[r.label] for r in good], dtype=np.int64)
    _n, c, h, w = images.shape
    schema = ImageSchema(
        height=h,
        width=w,
        channels=c,
        classes=classes,
        counts={cls: per_class[cls] for cls in classes},
        value_min=float(images.min()),
        value_max=float(images.max()),
    )
    return ImageData(images, labels, [r.source for r in good], schema)


def split_images(data: ImageData, *, holdout_fraction: float = 0.2, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Stratified train/holdout split: every class keeps at least one image on each side.

    The holdout never reaches training; fidelity and privacy are measured against it.
    """
    if not 0 < holdout_fraction < 1:
        raise InvalidInputError(f"holdout_fraction must be in (0, 1), got {holdout_fraction}")
    rng = np.random.default_rng(seed)
    train_idx, hold_idx = [], []
    for k in range(data.schema.n_classes):
        idx = rng.permutation(np.flatnonzero(data.labels == k))
        n_hold = min(max(1, round(holdout_fraction * len(idx))), len(idx) - 1)
        hold_idx.append(idx[:n_hold])
        train_idx.append(idx[n_hold:])
    return data.subset(np.sort(np.concatenate(train_idx))), data.subset(np.sort(np.concatenate(hold_idx)))


validate_images_task = task(name="validate-images", cache_policy=NO_CACHE)(validate_images)
split_images_task = task(name="split-images", cache_policy=NO_CACHE)(split_images)
