"""Convolutional generative models for images; `models.registry` names them."""
