"""Reversible encoders from tables (and images) to the float tensors models train on."""

from synthgate.models.encoders.table import Span, TableEncoder

__all__ = ["Span", "TableEncoder"]
