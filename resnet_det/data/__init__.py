"""Datasets: detection dataset registration and validation, robust image mapper, toy data."""
from ..common.image import ImageError  # noqa: F401  (the two error types docs/bad_inputs.md names)
from .datasets import DatasetError  # noqa: F401
