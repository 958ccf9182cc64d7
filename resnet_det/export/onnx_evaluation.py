"""COCO / VOC metrics of an exported model on a registered dataset, through the evaluators and
the inference loop the PyTorch model is evaluated with (needs detectron2; the runner does not)."""
from __future__ import annotations

import logging

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from resnet_det.data.datasets import check_datasets, register_all_datasets
from resnet_det.deploy.runtime import OnnxDetector
from resnet_det.evaluation.evaluators import build_evaluator
from resnet_det.utils.image import read_image_checked

__all__ = ["OnnxModel", "evaluate_onnx"]

logger = logging.getLogger(__name__)


class OnnxModel:
    """An :class:`OnnxDetector` called like a detectron2 model in evaluation: a list of dataset
    dicts (``file_name``, ``height``, ``width``) -> ``[{"instances": Instances}]``. Each image is
    read as the evaluation mapper reads it (:func:`read_image_checked`, size checked against its
    annotation), then resized, run and rescaled by the detector itself."""

    def __init__(self, detector: OnnxDetector):
        self.detector = detector

    def __call__(self, inputs):
        outputs = []
        for d in inputs:
            expected = (d["height"], d["width"]) if "height" in d and "width" in d else None
            image = read_image_checked(d["file_name"], "RGB", expected_hw=expected)
            det = self.detector(image)
            inst = Instances(image.shape[:2])
            inst.pred_boxes = Boxes(torch.from_numpy(det["boxes"]))
            inst.scores = torch.from_numpy(det["scores"])
            inst.pred_classes = torch.from_numpy(det["classes"])
            outputs.append({"instances": inst})
        return outputs


def evaluate_onnx(cfg, onnx_path, threads: int | None = None) -> dict:
    """``{dataset: {task: metrics}}`` of the exported model on each of ``cfg.DATASETS.TEST``
    (registered and checked as train_det.py --eval-only does), with the same evaluators."""
    register_all_datasets(cfg)
    check_datasets(list(cfg.DATASETS.TEST))
    model = OnnxModel(OnnxDetector(onnx_path, threads=threads))
    results = {}
    for name in cfg.DATASETS.TEST:
        data = [[d] for d in DatasetCatalog.get(name)]  # batches of one, as the test loader
        results[name] = inference_on_dataset(model, data, build_evaluator(cfg, name))
    return results
