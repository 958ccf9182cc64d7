"""Evaluation: COCO (faster-coco-eval with pycocotools' numbers, pycocotools as the fallback) and
VOC evaluators chosen by a dataset's ``evaluator_type``, and top-1/top-5 classification error."""
from resnet_det.evaluation.coco import (
                                        COCO_STAT_NAMES,
                                        coco_engine,
                                        evaluate_coco_files,
                                        load_coco_gt,
                                        load_coco_results,
                                        run_cocoeval,
                                        use_in_detectron2,
)

__all__ = ["COCO_STAT_NAMES", "coco_engine", "evaluate_coco_files", "load_coco_gt", "load_coco_results",
           "run_cocoeval", "use_in_detectron2"]
