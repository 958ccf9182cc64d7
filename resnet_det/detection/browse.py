"""Draw a registered dataset's ground truth (boxes and class names), optionally after the
training augmentation, so a user sees that the annotations are right before training; or cut
its boxes out as an ImageNet-layout folder for classification pretraining on the same images.

``tools/browse_dataset.py`` is the command line (like detectron2's tools/visualize_data.py).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from detectron2.structures import BoxMode
from detectron2.utils.colormap import colormap
from detectron2.utils.visualizer import Visualizer
from PIL import Image

from ..common.image import ImageError, read_image_checked
from ..data.datasets import check_datasets, register_all_datasets
from ..data.mapper import RobustDatasetMapper

__all__ = ["browse_dataset", "class_color", "export_crops"]

logger = logging.getLogger(__name__)
_PALETTE = colormap(rgb=True, maximum=1)


def class_color(class_id: int) -> tuple:
    """The RGB colour (0..1 floats) boxes of class ``class_id`` are drawn in (one per class,
    the same in every image; detectron2's colormap)."""
    return tuple(float(v) for v in _PALETTE[class_id % len(_PALETTE)])


def _draw(image_rgb, boxes_xyxy, class_ids, class_names):
    """``image_rgb`` (HxWx3 uint8) with each box and its class name drawn by detectron2's
    Visualizer, coloured by class."""
    visualizer = Visualizer(image_rgb, metadata=None)
    labels = [
        class_names[c] if class_names and 0 <= c < len(class_names) else str(c) for c in class_ids
    ]
    drawn = visualizer.overlay_instances(
        boxes=np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4),
        labels=labels,
        assigned_colors=[class_color(c) for c in class_ids],
    )
    return drawn.get_image()


def _ground_truth(record):
    boxes = [BoxMode.convert(a["bbox"], a["bbox_mode"], BoxMode.XYXY_ABS) for a in record["annotations"]]
    return boxes, [a["category_id"] for a in record["annotations"]]


def _split_datasets(cfg, split):
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    names = list(cfg.DATASETS.TRAIN if split == "train" else cfg.DATASETS.TEST)
    register_all_datasets(cfg)
    check_datasets(names)
    return names


def export_crops(cfg, output_dir, split="train", context=0.1, min_side=8, num=None) -> Counter:
    """Write every ground-truth box of DATASETS.TRAIN (``split`` "train") or DATASETS.TEST
    ("test") as ``output_dir/<class>/<image>_<k>.png``, the box grown by ``context`` of its
    size on each side (clipped to the image); boxes shorter than ``min_side`` pixels are left
    out. The result is an ImageNet-layout folder (``tools/pretrain_cls.py`` DATA.TRAIN_DIR or
    VAL_DIR). Returns the number of crops per class."""
    written = Counter()
    for name in _split_datasets(cfg, split):
        class_names = list(MetadataCatalog.get(name).get("thing_classes", []) or [])
        for index, record in enumerate(DatasetCatalog.get(name)):
            if num is not None and index >= num:
                break
            boxes, class_ids = _ground_truth(record)
            if not boxes:
                continue
            image = read_image_checked(record["file_name"], "RGB", (record["height"], record["width"]),
                                       cfg.DATASETS.MAX_IMAGE_PIXELS or None, strict=True)
            height, width = image.shape[:2]
            for k, ((x0, y0, x1, y1), c) in enumerate(zip(boxes, class_ids)):
                if min(x1 - x0, y1 - y0) < min_side:
                    continue
                dx, dy = context * (x1 - x0), context * (y1 - y0)
                left, top = max(int(x0 - dx), 0), max(int(y0 - dy), 0)
                right, bottom = min(int(np.ceil(x1 + dx)), width), min(int(np.ceil(y1 + dy)), height)
                label = class_names[c] if c < len(class_names) else str(c)
                folder = Path(output_dir) / label
                folder.mkdir(parents=True, exist_ok=True)
                stem = f"{Path(record['file_name']).stem}_{k}.png"
                Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right])).save(folder / stem)
                written[label] += 1
    return written


def browse_dataset(cfg, output_dir, split="train", augment=False, num=None) -> dict:
    """Write ``output_dir/<dataset>/<image>.png`` for the images of DATASETS.TRAIN (``split``
    "train") or DATASETS.TEST ("test"), with their ground-truth boxes and class names; with
    ``augment``, after the training mapper (resize, flip) instead. ``num`` limits the images.
    Returns {"images": paths written, "boxes_per_class": Counter of drawn boxes by name}."""
    names = _split_datasets(cfg, split)
    mapper = RobustDatasetMapper(cfg, is_train=True) if augment else None
    written, per_class = [], Counter()
    for name in names:
        records = DatasetCatalog.get(name)  # the checked loaders: what training reads
        class_names = list(MetadataCatalog.get(name).get("thing_classes", []) or [])
        folder = Path(output_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        for record in records:
            if num is not None and len(written) >= num:
                break
            if mapper is None:
                try:
                    image = read_image_checked(
                        record["file_name"], "RGB", (record["height"], record["width"]),
                        cfg.DATASETS.MAX_IMAGE_PIXELS or None, strict=cfg.DATASETS.STRICT,
                    )
                except ImageError as e:
                    if cfg.DATASETS.STRICT:
                        raise
                    logger.warning(f"skipped (training skips it too): {e}")
                    continue
                boxes, class_ids = _ground_truth(record)
            else:
                mapped = mapper(record)
                if mapped is None:  # unreadable image: the mapper logged it, training skips it
                    continue
                image = convert_image_to_rgb(mapped["image"].permute(1, 2, 0), cfg.INPUT.FORMAT)
                instances = mapped["instances"]
                boxes = instances.gt_boxes.tensor.tolist()
                class_ids = instances.gt_classes.tolist()
            path = folder / (Path(record["file_name"]).stem + ".png")
            Image.fromarray(_draw(np.ascontiguousarray(image), boxes, class_ids, class_names)).save(path)
            written.append(path)
            per_class.update(class_names[c] if c < len(class_names) else str(c) for c in class_ids)
    return {"images": written, "boxes_per_class": per_class}
