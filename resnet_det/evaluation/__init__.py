"""Evaluation helpers: standalone COCO evaluation of a results json with pycocotools."""
from .coco import COCO_STAT_NAMES, evaluate_coco_files  # noqa: F401
