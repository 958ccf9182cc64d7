"""Datasets: detection dataset registration and validation, robust image mapper, toy data."""
from .datasets import (  # noqa: F401
    DatasetError,
    add_dataset_config,
    check_datasets,
    register_all_datasets,
    register_coco_json,
    register_voc,
)
from ..common.image import ImageError, read_image_checked  # noqa: F401
from .mapper import RobustDatasetMapper  # noqa: F401
