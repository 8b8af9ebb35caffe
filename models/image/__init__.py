"""Convolutional generative models for images; importing this package registers them in `models.registry`."""

from synthgate.models.image import augment, autoencoder, gan, vae  # noqa: F401  (imported for their @register side effect)
