"""Run a trained detector on images and draw its detections (detectron2's ``Visualizer``)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import matplotlib.patches as mpl_patches
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.structures import BoxMode
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..checkpoint.detectron2 import ResNetDetCheckpointer
from ..common.image import IMAGE_SUFFIXES, list_images, read_image_checked
from ..data.datasets import register_all_datasets
from .engine import _default_device

__all__ = ["IMAGE_SUFFIXES", "GT_COLOR", "DET_COLOR", "build_predictor", "list_images", "run_demo",
           "draw_gt_and_detections", "draw_detection_grid", "tile", "LEGEND_HEIGHT"]

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


# ---------------------------------------------------------------- ground truth vs detections

# Two colours that stay apart from each other on any background: ground truth green, detections
# magenta. Ground-truth boxes are drawn three times as thick and first, so a detection that sits
# exactly on its object leaves a green rim on both sides of its own (thinner) outline.
GT_COLOR = (0.0, 0.9, 0.0)
DET_COLOR = (1.0, 0.0, 1.0)


def draw_gt_and_detections(image_rgb, gt_boxes, gt_classes, det_boxes, det_classes, det_scores,
                           class_names, scale=2.0) -> np.ndarray:
    """``image_rgb`` (HxWx3 uint8) enlarged ``scale`` times, with the ground-truth boxes
    (:data:`GT_COLOR`, class name below the box) and the detections (:data:`DET_COLOR`, class
    name and score inside the box's top-left corner) drawn by detectron2's ``Visualizer``.
    Boxes are ``x0, y0, x1, y1`` in the input image's pixels; returns the drawn RGB image."""
    vis = Visualizer(image_rgb, scale=scale)
    font = vis._default_font_size * 0.9  # Visualizer's own choice for this image size
    width = max(vis._default_font_size / 4, 1)  # draw_box's line width, in points before scale

    def box(xyxy, color, line_scale):
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        vis.output.ax.add_patch(mpl_patches.Rectangle(
            (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=color, alpha=1.0,
            linewidth=width * line_scale * vis.output.scale))

    def name(c):
        return class_names[int(c)] if class_names else str(int(c))

    for xyxy, c in zip(gt_boxes, gt_classes):
        box(xyxy, GT_COLOR, 3.0)
        vis.draw_text(name(c), (float(xyxy[0]), float(xyxy[3])), color=GT_COLOR,
                      horizontal_alignment="left", font_size=font)
    for xyxy, c, s in zip(det_boxes, det_classes, det_scores):
        box(xyxy, DET_COLOR, 1.0)
        vis.draw_text(f"{name(c)} {100 * float(s):.0f}%", (float(xyxy[0]), float(xyxy[1])),
                      color=DET_COLOR, horizontal_alignment="left", font_size=font)
    return np.asarray(vis.output.get_image())


def tile(images, columns, gap=4, fill=255) -> np.ndarray:
    """Same-size HxWx3 images in a grid of ``columns`` (row-major), ``gap`` pixels of ``fill``
    between and around them. Cell ``i`` starts at ``(gap + row * (H + gap), gap + col * (W + gap))``."""
    if not images:
        raise ValueError("tile: no images")
    h, w = images[0].shape[:2]
    if any(im.shape != images[0].shape for im in images):
        raise ValueError(f"tile: images differ in shape: {sorted({im.shape for im in images})}")
    rows = -(-len(images) // columns)
    grid = np.full((gap + rows * (h + gap), gap + columns * (w + gap), 3), fill, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        grid[y:y + h, x:x + w] = im
    return grid


LEGEND_HEIGHT = 28  # pixels of the legend strip above the grid


def _caption(text, width, height=LEGEND_HEIGHT) -> np.ndarray:
    """A dark strip ``width`` pixels wide with ``text`` in it (the grid's legend)."""
    vis = Visualizer(np.full((height, width, 3), 40, np.uint8))
    vis.output.ax.text(6, height / 2, text, size=11, family="sans-serif", color="white",
                       verticalalignment="center", horizontalalignment="left")
    return np.asarray(vis.output.get_image())


def draw_detection_grid(cfg, weights, dataset_name, output, *, num_images=8, columns=4, scale=2.0,
                        confidence_threshold=0.5, title="") -> dict:
    """Run the detector ``weights`` on the first ``num_images`` images of the registered
    detection dataset ``dataset_name`` and write one PNG (``output``) with a cell per image:
    ground truth and detections overlaid in two colours (:func:`draw_gt_and_detections`),
    ``columns`` cells a row (:func:`tile`), under a :data:`LEGEND_HEIGHT` pixel legend naming
    ``title`` and the score threshold. Also
    writes ``<output stem>.json`` (each image's boxes); returns that record."""
    register_all_datasets(cfg)
    records = DatasetCatalog.get(dataset_name)[:num_images]
    if not records:
        raise ValueError(f"dataset {dataset_name} has no images to draw")
    predictor = build_predictor(cfg, weights, confidence_threshold)
    class_names = _class_names(cfg)
    cells, images = [], []
    for rec in records:
        rgb = read_image_checked(rec["file_name"], format="RGB")
        instances = predictor(rgb[:, :, ::-1].copy())["instances"].to("cpu")  # predictor wants BGR
        gt = [(BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS), a["category_id"])
              for a in rec.get("annotations", []) if not a.get("iscrowd", 0)]
        det = list(zip(instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist(),
                       instances.scores.tolist()))
        cells.append(draw_gt_and_detections(
            rgb, [b for b, _ in gt], [c for _, c in gt], [d[0] for d in det], [d[1] for d in det],
            [d[2] for d in det], class_names, scale=scale))
        name = (lambda c: class_names[c] if class_names else str(c))
        images.append({
            "file": rec["file_name"],
            "ground_truth": [{"bbox_xyxy": [round(v, 2) for v in b], "class_name": name(c)} for b, c in gt],
            "detections": [{"bbox_xyxy": [round(v, 2) for v in b], "class_name": name(c), "score": round(s, 4)}
                           for b, c, s in det],
        })
    grid = tile(cells, columns)
    legend = (f"{title + ':  ' if title else ''}green = ground truth (name under the box),  "
              f"magenta = detections with score >= {confidence_threshold:g} (name, score)")
    picture = np.concatenate([_caption(legend, grid.shape[1]), grid])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(output, optimize=True)
    result = {"picture": str(output), "dataset": dataset_name, "scale": scale, "columns": columns,
              "confidence_threshold": confidence_threshold, "images": images}
    output.with_suffix(".json").write_text(json.dumps(result, indent=2))
    logger.info("%d images drawn (ground truth vs detections) -> %s", len(images), output)
    return result
