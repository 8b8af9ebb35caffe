"""How many synthetic images of each class to make, and making them.

Three rules: `per_class=N` gives N of every class; `balance=True` fills every class up to the largest class of the
input (an augmentation set that, added to the input, makes it balanced); neither gives the training split's own class
counts (a synthetic copy). The classic transforms themselves live in `models.image.augment` as the `augment` model, so
the flow treats them like any learnt model.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)

from synthgate.models.base import make_generator
from synthgate.models.image.common import ImageModel
from synthgate.schemas.errors import InvalidInputError
from synthgate.schemas.image import ImageSchema
from synthgate.tasks.images.validate import ImageData

log = logging.getLogger(__name__)


def plan_counts(
    input_schema: ImageSchema,
    train_schema: ImageSchema,
    *,
    per_class: int | None = None,
    balance: bool = False,
    private: bool = False,
) -> dict[str, int]:
    """Synthetic images per class name under the rule described in the module docstring.

    With `private` (a DP run) the class counts are private: without `per_class` every class gets an equal share of
    the training size (the number of images, like the number of rows of a DP table run, is treated as public).
    """
    if per_class is not None and balance:
        raise InvalidInputError("choose per_class or balance, not both")
    if per_class is not None:
        return dict.fromkeys(input_schema.classes, per_class)
    if private:
        return dict.fromkeys(input_schema.classes, max(1, train_schema.n_images // max(input_schema.n_classes, 1)))
    if balance:
        top = max(input_schema.counts.values())
        return {c: top - n for c, n in input_schema.counts.items()}
    return dict(train_schema.counts)


def sample_images(model: ImageModel, counts: dict[str, int], schema: ImageSchema, *, seed: int = 0) -> ImageData:
    """Draw `counts[class]` images of each class from a fitted model; labels are the classes asked for."""
    labels = np.concatenate(
        [np.full(n, schema.classes.index(c), dtype=np.int64) for c, n in counts.items() if n > 0]
        or [np.zeros(0, np.int64)]
    )
    generator = make_generator(seed + 1)  # +1: not the stream that initialised the networks
    images = model.sample(len(labels), conditions=torch.from_numpy(labels), generator=generator).numpy()  # (n, C, H, W)
    out_counts = {c: int(n) for c, n in counts.items()}
    log.info("sampled %d synthetic images: %s", len(labels), out_counts)
    return ImageData(
        images.astype(np.float32),
        labels,
        [f"synthetic[{i}]" for i in range(len(labels))],
        schema.model_copy(update={"counts": out_counts}),
    )


sample_images_task = task(name="sample-images", cache_policy=NO_CACHE)(sample_images)
