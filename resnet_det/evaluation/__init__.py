"""Evaluation helpers: COCO evaluation (faster-coco-eval, pycocotools as the fallback) of
results files, and the result-analysis pictures (:mod:`resnet_det.evaluation.analysis`)."""
from .coco import (  # noqa: F401
    COCO_STAT_NAMES,
    coco_engine,
    evaluate_coco_files,
    load_coco_gt,
    load_coco_results,
    run_cocoeval,
    use_in_detectron2,
)
