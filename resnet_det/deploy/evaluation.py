"""COCO / VOC metrics of an exported model on a registered dataset, through the evaluators and
the inference loop the PyTorch model is evaluated with (needs detectron2; the runner does not)."""
from __future__ import annotations

import logging

import torch
from detectron2.data import DatasetCatalog
from detectron2.evaluation import inference_on_dataset
from detectron2.structures import Boxes, Instances

from ..common.image import read_image_checked
from .runtime import OnnxDetector

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
    from ..data.datasets import check_datasets, register_all_datasets
    from ..detection.evaluation import build_evaluator

    register_all_datasets(cfg)
    check_datasets(list(cfg.DATASETS.TEST))
    model = OnnxModel(OnnxDetector(onnx_path, threads=threads))
    results = {}
    for name in cfg.DATASETS.TEST:
        data = [[d] for d in DatasetCatalog.get(name)]  # batches of one, as the test loader
        results[name] = inference_on_dataset(model, data, build_evaluator(cfg, name))
    return results


@torch.no_grad()
def pytorch_detections(model, cfg, image) -> dict:
    """The PyTorch model's detections on ``image`` (HxWx3 uint8 RGB) the way detectron2's
    ``DefaultPredictor`` computes them (its own ``ResizeShortestEdge``), as numpy arrays."""
    import numpy as np
    from detectron2.data import transforms as T

    resize = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST] * 2, cfg.INPUT.MAX_SIZE_TEST)
    resized = resize.get_transform(image).apply_image(image)
    if cfg.INPUT.FORMAT == "BGR":
        resized = resized[:, :, ::-1]
    x = torch.as_tensor(np.ascontiguousarray(resized.transpose(2, 0, 1)))
    inst = model([{"image": x, "height": image.shape[0], "width": image.shape[1]}])[0]["instances"]
    return {"boxes": inst.pred_boxes.tensor.numpy(), "scores": inst.scores.numpy(),
            "classes": inst.pred_classes.numpy()}


def compare_with_pytorch(model, cfg, detector: OnnxDetector, images, iou: float = 0.99) -> dict:
    """Detections of ``detector`` against the PyTorch ``model``'s on each of ``images`` (HxWx3
    uint8 RGB): totals of :func:`~resnet_det.deploy.compare.match_detections` (detections of
    each, matched pairs, largest box and score differences over the pairs)."""
    from .compare import match_detections

    total = {"images": 0, "pytorch": 0, "onnx": 0, "matched": 0, "max_box_diff_px": 0.0,
             "max_score_diff": 0.0, "sizes": set()}
    for image in images:
        m = match_detections(pytorch_detections(model, cfg, image), detector(image), iou)
        total["images"] += 1
        total["pytorch"] += m["count"][0]
        total["onnx"] += m["count"][1]
        total["matched"] += m["matched"]
        total["sizes"].add(detector.resize(image).shape[:2])
        for key in ("max_box_diff_px", "max_score_diff"):
            if m[key] is not None:
                total[key] = max(total[key], m[key])
    total["sizes"] = sorted(total["sizes"])
    return total
