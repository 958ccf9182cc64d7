"""Evaluators chosen by a dataset's ``evaluator_type``: COCO (pycocotools) or PASCAL VOC."""
from __future__ import annotations

import itertools
import json
import os
import tempfile
from collections import defaultdict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, PascalVOCDetectionEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

from ..checkpoint.io import atomic_write

__all__ = ["RESULTS_JSON", "VOCDetectionEvaluator", "build_evaluator"]

# The detections file both evaluators write to their output_dir (COCOEvaluator's name; the
# COCO results format). tools/analyze_results.py reads it.
RESULTS_JSON = "coco_instances_results.json"


class VOCDetectionEvaluator(PascalVOCDetectionEvaluator):
    """detectron2's PASCAL VOC evaluator (AP, AP50, AP75 with the year's own AP definition:
    11-point for 2007, all points for 2012), plus ``AP50_VOC07`` (11-point, the metric of the
    paper's VOC tables), ``AP50_allpoints`` and the per-class AP50 ``AP50-<class>``.

    With ``output_dir``, the detections are also written there as :data:`RESULTS_JSON`, in the
    COCO results format of the ground truth that detectron2's ``convert_to_coco_dict`` makes of
    the dataset (image ids = VOC ids, category ids = class indices), for the result analysis."""

    def __init__(self, dataset_name, output_dir=None):
        super().__init__(dataset_name)
        self._output_dir = output_dir

    def reset(self):
        super().reset()
        self._coco_results = []

    def process(self, inputs, outputs):
        super().process(inputs, outputs)
        if self._output_dir:
            for inp, out in zip(inputs, outputs):
                instances = out["instances"].to(self._cpu_device)
                self._coco_results.extend(instances_to_coco_json(instances, inp["image_id"]))

    def evaluate(self):
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return None
        if self._output_dir:
            coco_results = comm.gather(self._coco_results, dst=0)
            os.makedirs(self._output_dir, exist_ok=True)
            with atomic_write(os.path.join(self._output_dir, RESULTS_JSON), mode="w") as f:
                json.dump(list(itertools.chain(*coco_results)), f)
        predictions = defaultdict(list)
        for per_rank in all_predictions:
            for cls_id, lines in per_rank.items():
                predictions[cls_id].extend(lines)
        self._logger.info(
            f"Evaluating {self._dataset_name} with the VOC{2007 if self._is_2007 else 2012} "
            "metric (and AP50 with both AP definitions)"
        )
        aps = defaultdict(list)  # IoU threshold (%) -> AP per class, the year's definition
        ap50 = {True: [], False: []}  # use_07_metric -> AP50 per class
        with tempfile.TemporaryDirectory(prefix="voc_eval_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            for cls_id, cls_name in enumerate(self._class_names):
                with open(template.format(cls_name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))

                def ap(iou, use_07):
                    _, _, value = voc_eval(
                        template,
                        self._anno_file_template,
                        self._image_set_path,
                        cls_name,
                        ovthresh=iou / 100.0,
                        use_07_metric=use_07,
                    )
                    return value * 100

                for iou in range(50, 100, 5):
                    aps[iou].append(ap(iou, self._is_2007))
                ap50[self._is_2007].append(aps[50][-1])
                ap50[not self._is_2007].append(ap(50, not self._is_2007))
        mean = {iou: float(np.mean(v)) for iou, v in aps.items()}
        bbox = {"AP": float(np.mean(list(mean.values()))), "AP50": mean[50], "AP75": mean[75]}
        bbox["AP50_VOC07"] = float(np.mean(ap50[True]))
        bbox["AP50_allpoints"] = float(np.mean(ap50[False]))
        for name, value in zip(self._class_names, aps[50]):
            bbox[f"AP50-{name}"] = float(value)
        return {"bbox": bbox}


def build_evaluator(cfg, dataset_name: str, output_dir: str | None = None):
    """COCOEvaluator or :class:`VOCDetectionEvaluator`, from the dataset's ``evaluator_type``;
    both write their detections to ``output_dir`` (default OUTPUT_DIR/inference/<dataset>)."""
    evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
    output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if evaluator_type == "coco":
        return COCOEvaluator(dataset_name, output_dir=output_dir)
    if evaluator_type == "pascal_voc":
        return VOCDetectionEvaluator(dataset_name, output_dir=output_dir)
    raise ValueError(
        f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; this trainer evaluates "
        "'coco' and 'pascal_voc' datasets (register COCO-format json files with "
        "DATASETS.COCO_JSON_REGISTER)"
    )
