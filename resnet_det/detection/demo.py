"""Run a trained detector on images and draw its detections (detectron2's ``Visualizer``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..checkpoint.detectron2 import ResNetDetCheckpointer
from ..common.image import IMAGE_SUFFIXES, list_images, read_image_checked
from ..data.datasets import register_all_datasets
from .engine import _default_device

__all__ = ["IMAGE_SUFFIXES", "build_predictor", "list_images", "run_demo"]

logger = logging.getLogger(__name__)


def build_predictor(cfg, weights: str, confidence_threshold: float) -> DefaultPredictor:
    """detectron2's ``DefaultPredictor`` whose weights go through our safe checkpointer."""
    cfg = cfg.clone()
    cfg.defrost()
    note = _default_device(cfg)
    if note:
        logger.info(note)
    cfg.MODEL.WEIGHTS = ""  # DefaultPredictor's own loader would unpickle; ours does not
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = confidence_threshold
    cfg.freeze()
    predictor = DefaultPredictor(cfg)
    ResNetDetCheckpointer(predictor.model).load(weights)
    return predictor


def _class_names(cfg) -> list[str] | None:
    """The class names of the config's test (else train) dataset, in contiguous-id order."""
    register_all_datasets(cfg)
    for name in list(cfg.DATASETS.TEST) + list(cfg.DATASETS.TRAIN):
        meta = MetadataCatalog.get(name)
        if meta.get("thing_classes", None):
            return list(meta.thing_classes)
        json_file = meta.get("json_file", None)
        if json_file and Path(json_file).is_file():
            # COCO-format metadata is filled only when the dataset is loaded; detectron2 maps
            # category ids to contiguous ids in sorted-id order, so read the names likewise.
            with open(json_file) as f:
                categories = json.load(f).get("categories", [])
            return [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    return None


def run_demo(cfg, weights, inputs, output_dir, confidence_threshold=0.5) -> list[dict]:
    """Detect objects in ``inputs`` (file or directory), write ``<name>.png`` with the drawn
    boxes, class names and scores, and ``detections.json``; returns the json records."""
    images = list_images(inputs)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    predictor = build_predictor(cfg, weights, confidence_threshold)
    class_names = _class_names(cfg)
    if class_names is None:
        logger.warning("no class names in the metadata of %s: drawing class ids", cfg.DATASETS.TEST)
    metadata = MetadataCatalog.get("__resnet_det_demo__")
    if class_names is not None and not metadata.get("thing_classes", None):
        metadata.thing_classes = class_names
    records = []
    for path in images:
        image = read_image_checked(str(path), format="BGR")  # what DefaultPredictor expects
        instances = predictor(image)["instances"].to("cpu")
        drawn = Visualizer(image[:, :, ::-1], metadata).draw_instance_predictions(instances)
        target = out / f"{path.stem}.png"
        Image.fromarray(np.asarray(drawn.get_image())).save(target)
        boxes = instances.pred_boxes.tensor.tolist()
        dets = [
            {
                "bbox_xyxy": [round(v, 2) for v in box],
                "score": round(float(score), 4),
                "class_id": int(c),
                "class_name": class_names[int(c)] if class_names else str(int(c)),
            }
            for box, score, c in zip(boxes, instances.scores.tolist(), instances.pred_classes.tolist())
        ]
        records.append({"file": str(path), "output": str(target), "detections": dets})
        logger.info("%s: %d detections -> %s", path.name, len(dets), target)
    (out / "detections.json").write_text(json.dumps(records, indent=2))
    return records
