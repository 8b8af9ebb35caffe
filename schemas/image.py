"""Image-run schemas: what an image set looks like, the gates it must meet, and the request for one run.

Images travel as (n, channels, height, width) floats in [0, 1] inside the pipeline; these models describe them without
importing torch, so the command line, the report and the Parquet metadata can all read them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthgate.schemas.request import ParquetRunRequest


class ImageSchema(BaseModel):
    """Shape, classes and value range of one image set (inferred at validation, carried into the output metadata)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    height: int = Field(gt=0)
    width: int = Field(gt=0)
    channels: Literal[1, 3]
    classes: list[str] = Field(description="class names; the label index of an image is its position here")
    counts: dict[str, int] = Field(description="images per class")
    value_min: float = Field(0.0, description="smallest pixel value after scaling to [0, 1]")
    value_max: float = Field(1.0, description="largest pixel value after scaling to [0, 1]")

    @property
    def n_images(self) -> int:
        return sum(self.counts.values())

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width), the shape of one image tensor."""
        return (self.channels, self.height, self.width)


class ImageGateThresholds(BaseModel):
    """Fidelity and privacy thresholds for synthetic images; `None` turns a check into information only.

    Features come from a small CNN trained on the real training split (no downloaded weights), standardised with the
    training features' mean and scale, so the Fréchet distance is in units of feature standard deviations and does not
    depend on the image size. Defaults were set on scikit-learn's digits: they pass a conditional VAE and GAN trained
    for the default epochs and refuse class-blind or noise samples.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Fidelity (measured against the holdout split).
    class_accuracy_min: float | None = Field(
        0.80, ge=0, le=1, description="share of synthetic images the real-trained classifier assigns to their class"
    )
    frechet_distance_max: float | None = Field(
        None, ge=0, description="Fréchet distance between holdout and synthetic standardised classifier features"
    )
    frechet_ratio_max: float | None = Field(
        5.0, ge=0, description="Fréchet distance synthetic-holdout / train-holdout (the real data's own distance)"
    )
    precision_min: float | None = Field(
        0.50, ge=0, le=1, description="share of synthetic features inside the real k-NN manifold (realism)"
    )
    recall_min: float | None = Field(
        0.30, ge=0, le=1, description="share of real features inside the synthetic k-NN manifold (diversity)"
    )
    augmentation_gain_min: float | None = Field(
        None, description="holdout accuracy gain from adding synthetic images to a small real subset"
    )
    # Privacy.
    memorisation_share_max: float | None = Field(
        0.15,
        ge=0,
        le=1,
        description="share of synthetic images nearer a training image than the 5th percentile of train-to-train distances",
    )


class ImageRunRequest(ParquetRunRequest):
    """One image synthesis or augmentation run.

    `input` is a folder of class sub-folders of PNG/JPEG files, an `.npz` file (`images`, `labels`), a Parquet file with
    an image-bytes column and a label column, or `dataset:digits` (scikit-learn's 8x8 digits).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="folder, .npz, .parquet or dataset:digits")
    output: Path = Field(description="Parquet file to publish (PNG bytes + label)")
    model: str = Field("vae", description="an image family of the model registry (checked before any work)")
    per_class: int | None = Field(None, gt=0, description="synthetic images per class")
    balance: bool = Field(False, description="fill every class up to the largest class's count")
    seed: int = Field(0, ge=0)
    epochs: int | None = Field(None, gt=0, description="training epochs; default: the model's own")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    resize: tuple[int, int] | None = Field(None, description="(height, width) to resize every image to; default: none")
    holdout_fraction: float = Field(0.2, gt=0, lt=0.9)
    min_per_class: int = Field(10, ge=2, description="fewest images a class needs for training and its holdout share")
    allow_flips: bool = Field(False, description="augment model: horizontal flips (only when they keep the label)")
    model_options: dict = Field(default_factory=dict, description="hyperparameters passed to the model config")
    epsilon: float | None = Field(
        None, gt=0, description="differential-privacy budget: DP-SGD (vae, gan: discriminator, autoencoder + DP-EM)"
    )
    delta: float | None = Field(None, gt=0, lt=1, description="with epsilon: the DP delta (default 1/(10 n))")
    thresholds: ImageGateThresholds = Field(default_factory=ImageGateThresholds)
    report_path: Path | None = Field(None, description="HTML report; default: beside the output, OUT.html")

    @field_validator("resize")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) <= 0:
            raise ValueError(f"resize must be a positive (height, width), got {value}")
        return value

    @model_validator(mode="after")
    def _one_count_rule(self) -> ImageRunRequest:
        if self.per_class is not None and self.balance:
            raise ValueError("choose --per-class N or --balance, not both")
        return self

    @model_validator(mode="after")
    def _private_model(self) -> ImageRunRequest:
        if self.epsilon is not None and self.model == "augment":
            raise ValueError(
                "--epsilon needs a trained model (vae, gan or autoencoder); augment transforms real images"
            )
        if self.delta is not None and self.epsilon is None:
            raise ValueError("--delta only means something with --epsilon")
        return self
