"""Evaluators chosen by a dataset's ``evaluator_type``: COCO (pycocotools) or PASCAL VOC."""
from __future__ import annotations

import itertools
import json
import logging
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.evaluation import COCOEvaluator, DatasetEvaluator, PascalVOCDetectionEvaluator
from detectron2.evaluation.coco_evaluation import instances_to_coco_json
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

from resnet_det.data.voc import BOX_TAGS, read_voc_xml, voc_number
from resnet_det.utils.files import atomic_write

__all__ = ["NoDetectionAsZero", "RESULTS_JSON", "VOCDetectionEvaluator", "build_evaluator"]

# The detections file both evaluators write to their output_dir (COCOEvaluator's name; the
# COCO results format). tools/analyze_results.py reads it.
RESULTS_JSON = "coco_instances_results.json"

logger = logging.getLogger(__name__)
# COCO's summary metrics and the size range (pycocotools' Params.areaRngLbl) each one covers.
_COCO_RANGES = {"AP": "all", "AP50": "all", "AP75": "all", "APs": "small", "APm": "medium",
                "APl": "large"}


class NoDetectionAsZero(DatasetEvaluator):
    """Wraps an evaluator: when the model made no detection at all (on any process), AP, AP50
    and AP75 are 0, not detectron2's ``nan``, with a warning saying why; a size range (APs,
    APm, APl) stays ``nan`` when the ground truth has no object of that size, as pycocotools
    reports it. VOC APs are already 0 then; the warning is added."""

    def __init__(self, evaluator, dataset_name):
        self.evaluator = evaluator
        self.dataset_name = dataset_name
        self._count = 0

    def reset(self):
        self._count = 0
        self.evaluator.reset()

    def process(self, inputs, outputs):
        self._count += sum(len(o["instances"]) for o in outputs if "instances" in o)
        self.evaluator.process(inputs, outputs)

    def evaluate(self):
        counts = comm.gather(self._count, dst=0)  # every rank calls it, like the evaluators
        results = self.evaluator.evaluate()
        if not comm.is_main_process() or sum(counts) > 0:
            return results
        logger.warning(f"The model made no detection on {self.dataset_name} (none scored above "
                       "MODEL.ROI_HEADS.SCORE_THRESH_TEST): its AP is reported as 0. Train longer, check "
                       "the learning rate and the data (tools/browse_dataset.py), or lower the threshold.")
        coco_api = getattr(self.evaluator, "_coco_api", None)
        if not results or coco_api is None:
            return results
        present = _coco_ranges_with_ground_truth(coco_api)
        for metrics in results.values():
            for key, value in list(metrics.items()):
                if key in _COCO_RANGES and math.isnan(value) and _COCO_RANGES[key] in present:
                    metrics[key] = 0.0
        return results


def _coco_ranges_with_ground_truth(coco_api):
    """Names of pycocotools' area ranges that hold at least one non-crowd ground-truth box."""
    from pycocotools.cocoeval import Params

    params = Params(iouType="bbox")
    areas = [a["area"] for a in coco_api.dataset.get("annotations", []) if not a.get("iscrowd")]
    return {label
            for label, (lo, hi) in zip(params.areaRngLbl, params.areaRng)
            if any(lo <= area <= hi for area in areas)}


class VOCDetectionEvaluator(PascalVOCDetectionEvaluator):
    """detectron2's PASCAL VOC evaluator (AP, AP50, AP75 with the year's own AP definition:
    11-point for 2007, all points for 2012), plus ``AP50_VOC07`` (11-point, the metric of the
    paper's VOC tables), ``AP50_allpoints`` and the per-class AP50 ``AP50-<class>``.

    With ``output_dir``, the detections are also written there as :data:`RESULTS_JSON`, in the
    COCO results format of the ground truth that detectron2's ``convert_to_coco_dict`` makes of
    the dataset (image ids = VOC ids, category ids = class indices), for the result analysis.

    detectron2's ``voc_eval`` reads the xml files with ``int()`` coordinates and requires
    ``<pose>``, ``<truncated>`` and ``<difficult>``, which labelling tools other than LabelImg
    often leave out or write as decimals; the ground truth is therefore copied first into
    files it reads (:func:`_normalized_voc_xml`), with the same objects and flags."""

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
        # A collective: every process calls it, before the non-main ones return.
        coco_results = comm.gather(self._coco_results, dst=0) if self._output_dir else None
        if not comm.is_main_process():
            return None
        if self._output_dir:
            os.makedirs(self._output_dir, exist_ok=True)
            with atomic_write(os.path.join(self._output_dir, RESULTS_JSON), mode="w") as f:
                json.dump(list(itertools.chain(*coco_results)), f)
        predictions = defaultdict(list)
        for per_rank in all_predictions:
            for cls_id, lines in per_rank.items():
                predictions[cls_id].extend(lines)
        self._logger.info(f"Evaluating {self._dataset_name} with the VOC{2007 if self._is_2007 else 2012} "
                          "metric (and AP50 with both AP definitions)")
        aps = defaultdict(list)  # IoU threshold (%) -> AP per class, the year's definition
        ap50 = {True: [], False: []}  # use_07_metric -> AP50 per class
        with tempfile.TemporaryDirectory(prefix="voc_eval_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            annotations = os.path.join(dirname, "annotations")
            os.makedirs(annotations)
            with open(self._image_set_path) as f:
                for image_id in (line.strip() for line in f if line.strip()):
                    with open(os.path.join(annotations, image_id + ".xml"), "w") as out:
                        out.write(_normalized_voc_xml(self._anno_file_template.format(image_id)))
            anno_template = os.path.join(annotations, "{}.xml")
            for cls_id, cls_name in enumerate(self._class_names):
                with open(template.format(cls_name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))

                def ap(iou, use_07, cls_name=cls_name):
                    _, _, value = voc_eval(template, anno_template, self._image_set_path, cls_name,
                                           ovthresh=iou / 100.0, use_07_metric=use_07)
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


def _int(text, default=0):
    value = voc_number(text)
    return default if value is None else int(round(value))


def _normalized_voc_xml(path) -> str:
    """The objects of VOC xml ``path`` as detectron2's ``parse_rec`` reads them: name, pose,
    truncated, difficult (0 when absent) and integer bndbox (decimals rounded). Objects without
    a name or a complete numeric box are left out, as the training loader drops them; a file
    that does not parse gives no objects (the loader skipped that image)."""
    root = ET.Element("annotation")
    try:
        objects = read_voc_xml(path)["objects"]
    except ET.ParseError:
        objects = []
    for obj in objects:
        box = obj["box"] or {}
        if not obj["name"] or any(voc_number(box.get(tag)) is None for tag in BOX_TAGS):
            continue
        node = ET.SubElement(root, "object")
        for tag, value in (("name", obj["name"]), ("pose", obj["pose"] or "Unspecified"),
                           ("truncated", _int(obj["truncated"])), ("difficult", _int(obj["difficult"]))):
            ET.SubElement(node, tag).text = str(value)
        bndbox = ET.SubElement(node, "bndbox")
        for tag in BOX_TAGS:
            ET.SubElement(bndbox, tag).text = str(_int(box[tag]))
    return ET.tostring(root, encoding="unicode")


def build_evaluator(cfg, dataset_name: str, output_dir: str | None = None):
    """COCOEvaluator or :class:`VOCDetectionEvaluator`, from the dataset's ``evaluator_type``,
    inside :class:`NoDetectionAsZero`; both write their detections to ``output_dir`` (default
    OUTPUT_DIR/inference/<dataset>)."""
    evaluator_type = getattr(MetadataCatalog.get(dataset_name), "evaluator_type", None)
    output_dir = output_dir or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if evaluator_type == "coco":
        return NoDetectionAsZero(COCOEvaluator(dataset_name, output_dir=output_dir), dataset_name)
    if evaluator_type == "pascal_voc":
        return NoDetectionAsZero(VOCDetectionEvaluator(dataset_name, output_dir=output_dir),
                                 dataset_name)
    raise ValueError(f"dataset {dataset_name!r} has evaluator_type {evaluator_type!r}; this trainer evaluates "
                     "'coco' and 'pascal_voc' datasets (register COCO-format json files with "
                     "DATASETS.COCO_JSON_REGISTER, VOC-layout folders with DATASETS.VOC_REGISTER)")
