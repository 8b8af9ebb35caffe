"""Fidelity of synthetic images, measured in the feature space of a classifier trained on the real training split.

Four views: Fréchet distance (Heusel et al. 2017) between holdout and synthetic features, with the real train-vs-
holdout distance as the yardstick; k-NN precision and recall (Kynkäänniemi et al. 2019) for realism and diversity
separately; the classifier's accuracy on synthetic images against their intended class; and augmentation utility, the
holdout accuracy gained by adding synthetic images to a small real subset.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from prefect import task
from prefect.cache_policies import (
    NO_CACHE,  # inputs are image arrays and models: hashing them costs, and caching is keyed on content hashes later
)
from scipy import linalg

from synthgate.models.image.classifier import ImageClassifier, predict_features, train_classifier
from synthgate.schemas.gates import MetricResult
from synthgate.schemas.image import ImageGateThresholds
from synthgate.tasks.images.validate import ImageData

log = logging.getLogger(__name__)

MAX_PR_POINTS = 2000  # k-NN precision/recall is O(n^2): a subsample keeps it to seconds


@dataclass
class FidelityReport:
    metrics: list[MetricResult]
    per_class_accuracy: dict[str, float]
    classifier_holdout_accuracy: float


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) between Gaussians fitted to (n, d) feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(covmean).all():  # near-singular product: nudge both diagonals (the FID reference code does this)
        eps = np.eye(a.shape[1]) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def _kth_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)  # (n, n)
    return d.kthvalue(k + 1, dim=1).values  # k+1: the nearest "neighbour" of a point is itself


def precision_recall(real: np.ndarray, fake: np.ndarray, *, k: int = 3, seed: int = 0) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN balls around each set's points.

    Precision: share of fake points inside some real point's k-NN ball (are samples realistic?). Recall: share of real
    points inside some fake point's ball (is the real variety covered?).
    """
    rng = np.random.default_rng(seed)
    if len(real) > MAX_PR_POINTS:
        real = real[rng.choice(len(real), MAX_PR_POINTS, replace=False)]
    if len(fake) > MAX_PR_POINTS:
        fake = fake[rng.choice(len(fake), MAX_PR_POINTS, replace=False)]
    r, f = torch.as_tensor(real, dtype=torch.float32), torch.as_tensor(fake, dtype=torch.float32)
    k_r, k_f = min(k, len(r) - 1), min(k, len(f) - 1)
    radius_r, radius_f = _kth_radius(r, k_r), _kth_radius(f, k_f)  # (n_r,), (n_f,)
    cross = torch.cdist(f, r)  # (n_f, n_r)
    precision = (cross <= radius_r[None, :]).any(dim=1).float().mean().item()
    recall = (cross <= radius_f[:, None]).any(dim=0).float().mean().item()
    return precision, recall


def class_accuracy(
    model: ImageClassifier, images: np.ndarray, labels: np.ndarray, classes: list[str]
) -> dict[str, float]:
    """Share of images the classifier assigns to their intended class, per class present in `labels`."""
    _, pred = predict_features(model, images)
    return {classes[k]: float((pred[labels == k] == k).mean()) for k in np.unique(labels)}


def augmentation_utility(
    train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    *,
    per_class: int = 10,
    seed: int = 0,
    device: str = "auto",
) -> tuple[float, float]:
    """Holdout accuracy of a classifier on a small real subset, without and with the synthetic images added.

    The subset (`per_class` real images of each class) stands for the data-poor setting augmentation is for. Returns
    (accuracy real only, accuracy real + synthetic).
    """
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.permutation(np.flatnonzero(train.labels == k))[:per_class] for k in range(train.schema.n_classes)]
    )
    small = train.subset(np.sort(idx))
    k = train.schema.n_classes
    base = train_classifier(small.images, small.labels, k, seed=seed, device=device)
    mixed_x = np.concatenate([small.images, synthetic.images])
    mixed_y = np.concatenate([small.labels, synthetic.labels])
    aug = train_classifier(mixed_x, mixed_y, k, seed=seed, device=device)
    acc_base = float((predict_features(base, holdout.images)[1] == holdout.labels).mean())
    acc_aug = float((predict_features(aug, holdout.images)[1] == holdout.labels).mean())
    return acc_base, acc_aug


def check_fidelity(
    train: ImageData,
    holdout: ImageData,
    synthetic: ImageData,
    thresholds: ImageGateThresholds,
    *,
    seed: int = 0,
    device: str = "auto",
    utility: bool = True,
) -> FidelityReport:
    """Every image fidelity metric with its threshold and verdict.

    Args:
        train: the real training split (the feature classifier is trained on it, as the generator was).
        holdout: real images no model saw; distances and accuracies are measured against these.
        synthetic: the generated images and the classes they were asked to show.
        utility: also run the augmentation-utility experiment (two more classifier fits).
    """
    classes = train.schema.classes
    clf = train_classifier(train.images, train.labels, len(classes), seed=seed, device=device)
    f_train, _ = predict_features(clf, train.images)
    f_hold, pred_hold = predict_features(clf, holdout.images)
    f_syn, pred_syn = predict_features(clf, synthetic.images)
    # Standardise with the training features so distances are in feature-sd units, comparable across datasets.
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_hold, f_syn = (f_train - mu) / sd, (f_hold - mu) / sd, (f_syn - mu) / sd
    holdout_acc = float((pred_hold == holdout.labels).mean())

    rng = np.random.default_rng(seed)
    ref = f_train[rng.choice(len(f_train), min(len(f_train), max(len(f_syn), 2)), replace=False)]
    fd = frechet_distance(f_hold, f_syn) if len(f_syn) > 1 else None
    fd_real = frechet_distance(f_hold, ref)
    precision, recall = precision_recall(f_hold, f_syn, seed=seed) if len(f_syn) > 1 else (None, None)
    per_class = {classes[k]: float((pred_syn[synthetic.labels == k] == k).mean()) for k in np.unique(synthetic.labels)}
    accuracy = float((pred_syn == synthetic.labels).mean()) if len(f_syn) else None

    t = thresholds
    metrics = [
        MetricResult.judge(
            "class_accuracy", "fidelity", accuracy, t.class_accuracy_min, "min",
            "share of synthetic images the real-trained classifier assigns to their intended class",
            {"per_class": per_class, "classifier_holdout_accuracy": holdout_acc},
        ),
        MetricResult.judge(
            "frechet_distance", "fidelity", fd, t.frechet_distance_max, "max",
            "Fréchet distance, holdout vs synthetic classifier features (feature-sd units)",
            {"real_train_vs_holdout": fd_real},
        ),
        MetricResult.judge(
            "frechet_ratio", "fidelity", None if fd is None else fd / max(fd_real, 1e-9), t.frechet_ratio_max, "max",
            "Fréchet distance synthetic-holdout / train-holdout (1 = as close as real data)",
        ),
        MetricResult.judge(
            "precision", "fidelity", precision, t.precision_min, "min",
            "share of synthetic features inside the holdout's k-NN manifold (k=3): realism",
        ),
        MetricResult.judge(
            "recall", "fidelity", recall, t.recall_min, "min",
            "share of holdout features inside the synthetic k-NN manifold (k=3): diversity",
        ),
    ]  # fmt: skip
    if utility and len(synthetic):
        acc_base, acc_aug = augmentation_utility(train, holdout, synthetic, seed=seed, device=device)
        metrics.append(
            MetricResult.judge(
                "augmentation_gain", "fidelity", acc_aug - acc_base, t.augmentation_gain_min, "min",
                "holdout accuracy gain from adding the synthetic images to 10 real images per class",
                {"accuracy_real_subset": acc_base, "accuracy_with_synthetic": acc_aug},
            )
        )  # fmt: skip
    log.info("fidelity: %s", {m.name: m.value for m in metrics})
    return FidelityReport(metrics, per_class, holdout_acc)


check_fidelity_task = task(name="check-image-fidelity", cache_policy=NO_CACHE)(check_fidelity)
