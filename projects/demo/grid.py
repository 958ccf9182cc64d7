"""``make demo``'s picture: ground truth and detections of the first images of a dataset,
overlaid in two colours, one cell per image in a grid under a legend."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog
from PIL import Image, ImageDraw

from resnet_det.data.datasets import ground_truth, register_all_datasets
from resnet_det.engine.predictor import Predictor
from resnet_det.utils.draw import class_name, draw_boxes
from resnet_det.utils.files import write_json
from resnet_det.utils.image import read_image_checked

__all__ = ["DET_COLOR", "GT_COLOR", "LEGEND_HEIGHT", "draw_detection_grid", "draw_gt_and_detections", "tile"]

logger = logging.getLogger(__name__)

# Ground truth green, detections magenta: apart from each other on any background. Ground truth
# is drawn three times as thick and first, so a detection that sits exactly on its object leaves
# a green rim on both sides of its own outline.
GT_COLOR = (0, 230, 0)
DET_COLOR = (255, 0, 255)
LEGEND_HEIGHT = 28  # pixels of the legend strip above the grid


def draw_gt_and_detections(image_rgb, gt_boxes, gt_classes, det_boxes, det_classes, det_scores,
                           class_names, scale=2.0) -> np.ndarray:
    """``image_rgb`` (HxWx3 uint8) enlarged ``scale`` times with the ground-truth boxes
    (:data:`GT_COLOR`, class name under the box) and the detections (:data:`DET_COLOR`, class
    name and score above the box's top-left corner); boxes xyxy in the input image's pixels."""
    width = max(1, round(scale))
    drawn = draw_boxes(image_rgb, gt_boxes, [class_name(class_names, c) for c in gt_classes],
                       [GT_COLOR] * len(gt_boxes), scale=scale, line_width=3 * width, label_below=True)
    labels = [f"{class_name(class_names, c)} {100 * float(s):.0f}%" for c, s in zip(det_classes, det_scores)]
    # The detections on the enlarged drawing: their boxes scaled alike.
    return draw_boxes(drawn, np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4) * scale, labels,
                      [DET_COLOR] * len(labels), line_width=width)


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


def _caption(text, width, height=LEGEND_HEIGHT) -> np.ndarray:
    """A dark strip ``width`` pixels wide with ``text`` in it (the grid's legend)."""
    strip = Image.new("RGB", (width, height), (40, 40, 40))
    ImageDraw.Draw(strip).text((6, height // 2), text, fill="white", anchor="lm")
    return np.asarray(strip)


def draw_detection_grid(cfg, weights, dataset_name, output, *, num_images=8, columns=4, scale=2.0,
                        confidence_threshold=0.5, title="") -> dict:
    """Run the detector ``weights`` of ``cfg`` on the first ``num_images`` images of the
    registered dataset ``dataset_name`` and write one PNG (``output``): a cell per image with
    ground truth and detections (:func:`draw_gt_and_detections`), ``columns`` cells a row, under
    a legend naming ``title`` and the score threshold; also ``<output stem>.json`` (each image's
    boxes), which it returns."""
    register_all_datasets(cfg)
    records = DatasetCatalog.get(dataset_name)[:num_images]
    if not records:
        raise ValueError(f"dataset {dataset_name} has no images to draw")
    predictor = Predictor(cfg, weights, confidence_threshold)
    names = predictor.class_names
    cells, images = [], []
    for rec in records:
        rgb = read_image_checked(rec["file_name"], format="RGB")
        det = predictor(rgb)
        gt_boxes, gt_classes = ground_truth(rec)
        cells.append(draw_gt_and_detections(rgb, gt_boxes, gt_classes, det["boxes"], det["classes"], det["scores"],
                                            names, scale=scale))
        images.append({
            "file": rec["file_name"],
            "ground_truth": [{"bbox_xyxy": [round(float(v), 2) for v in b], "class_name": class_name(names, c)}
                             for b, c in zip(gt_boxes, gt_classes)],
            "detections": [{"bbox_xyxy": [round(float(v), 2) for v in b], "class_name": class_name(names, c),
                            "score": round(float(s), 4)}
                           for b, c, s in zip(det["boxes"], det["classes"], det["scores"])],
        })
    grid = tile(cells, columns)
    legend = (f"{title + ':  ' if title else ''}green = ground truth (name under the box),  "
              f"magenta = detections with score >= {confidence_threshold:g} (name, score)")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([_caption(legend, grid.shape[1]), grid])).save(output, optimize=True)
    result = {"picture": str(output), "dataset": dataset_name, "scale": scale, "columns": columns,
              "confidence_threshold": confidence_threshold, "images": images}
    write_json(output.with_suffix(".json"), result)
    logger.info("%d images drawn (ground truth vs detections) -> %s", len(images), output)
    return result
