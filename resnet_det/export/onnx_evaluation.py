"""COCO / VOC metrics of an exported model (any runtime and precision) on a registered dataset,
through the evaluators and the inference loop the PyTorch model is evaluated with, and of the
PyTorch model beside it (needs detectron2; the runner does not)."""
from __future__ import annotations

import logging

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from resnet_det.data.datasets import check_datasets, register_all_datasets
from resnet_det.deploy.runtime import OnnxDetector
from resnet_det.engine.detection import Trainer
from resnet_det.evaluation.evaluators import build_evaluator
from resnet_det.utils.image import read_image_checked

__all__ = ["OnnxModel", "evaluate_onnx", "evaluate_pytorch"]

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


def evaluate_onnx(cfg, onnx_path, threads: int | None = None, runtime="onnxruntime", precision="fp32") -> dict:
    """``{dataset: {task: metrics}}`` of the exported model (on ``runtime`` in ``precision``) on
    each of ``cfg.DATASETS.TEST``, registered and checked as train_det.py --eval-only does, with
    the same evaluators."""
    register_all_datasets(cfg)
    check_datasets(list(cfg.DATASETS.TEST))
    model = OnnxModel(OnnxDetector(onnx_path, runtime=runtime, precision=precision, threads=threads))
    return {name: inference_on_dataset(model, [[d] for d in DatasetCatalog.get(name)], build_evaluator(cfg, name))
            for name in cfg.DATASETS.TEST}  # batches of one, as the test loader


def evaluate_pytorch(cfg, weights) -> dict:
    """The same for the PyTorch model ``weights`` of ``cfg`` (train_det.py --eval-only's evaluation)."""
    from resnet_det.engine.predictor import Predictor

    predictor = Predictor(cfg, weights)
    return {name: inference_on_dataset(predictor.model, Trainer.build_test_loader(predictor.cfg, name),
                                       build_evaluator(predictor.cfg, name)) for name in cfg.DATASETS.TEST}
