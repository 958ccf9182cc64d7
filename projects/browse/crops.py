"""A detection dataset's boxes cut out as an ImageNet-layout folder (one folder per class, plus
``background`` crops that overlap no object), for classification pretraining on the same images
(``tools/browse_dataset.py --crops``; docs/custom_data.md)."""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image

from resnet_det.data.datasets import ground_truth, split_datasets
from resnet_det.utils.draw import class_name
from resnet_det.utils.image import ImageError, read_image_checked

__all__ = ["BACKGROUND", "export_crops", "read_record_image"]

logger = logging.getLogger(__name__)
BACKGROUND = "background"  # the class folder of the crops that hold no object


def read_record_image(cfg, record):
    """The RGB image of a dataset record, checked against its annotated size; None (with a
    warning naming the file) when it cannot be read, as training skips it; an ImageError with
    DATASETS.STRICT."""
    try:
        return read_image_checked(record["file_name"], "RGB", (record["height"], record["width"]),
                                  cfg.DATASETS.MAX_IMAGE_PIXELS or None, strict=cfg.DATASETS.STRICT)
    except ImageError as e:
        if cfg.DATASETS.STRICT:
            raise
        logger.warning(f"skipped (training skips it too): {e}")
        return None


def _background_boxes(rng, boxes, width, height, count, tries=50):
    """Up to ``count`` boxes, each the size of one of ``boxes`` (at most the image's), placed at
    random where they intersect none of ``boxes``."""
    found = []
    for _ in range(count):
        for _ in range(tries):
            x0, y0, x1, y1 = boxes[rng.integers(len(boxes))]
            w, h = min(x1 - x0, width), min(y1 - y0, height)
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            if all(left >= b[2] or left + w <= b[0] or top >= b[3] or top + h <= b[1] for b in boxes):
                found.append((left, top, left + w, top + h))
                break
    return found


def export_crops(cfg, output_dir, split="train", context=0.1, min_side=8, num=None, background=0, seed=0) -> Counter:
    """Write every ground-truth box of the ``split``'s datasets as ``output_dir/<class>/<image>_<k>.png``,
    grown by ``context`` of its size on each side (clipped to the image); boxes shorter than
    ``min_side`` pixels are left out. With ``background`` N, also up to N crops per image the
    size of its objects that overlap none of them, in ``output_dir/background/`` (a one-class
    dataset then gives two classes). Returns the number of crops per class."""
    written, rng = Counter(), np.random.default_rng(seed)
    for name in split_datasets(cfg, split):
        class_names = list(MetadataCatalog.get(name).get("thing_classes", []) or [])
        if BACKGROUND in class_names and background:
            raise ValueError(f"dataset {name} has a class named {BACKGROUND!r}: its crops and the "
                             "background crops would share a folder")
        for index, record in enumerate(DatasetCatalog.get(name)):
            if num is not None and index >= num:
                break
            boxes, class_ids = ground_truth(record)
            if not boxes:
                continue
            image = read_record_image(cfg, record)
            if image is None:
                continue
            height, width = image.shape[:2]
            empty = _background_boxes(rng, boxes, width, height, background) if background else []
            labelled = [(box, class_name(class_names, c), context) for box, c in zip(boxes, class_ids)]
            for k, ((x0, y0, x1, y1), label, grow) in enumerate(labelled + [(b, BACKGROUND, 0.0) for b in empty]):
                if min(x1 - x0, y1 - y0) < min_side:
                    continue
                dx, dy = grow * (x1 - x0), grow * (y1 - y0)
                left, top = max(int(x0 - dx), 0), max(int(y0 - dy), 0)
                right, bottom = min(int(np.ceil(x1 + dx)), width), min(int(np.ceil(y1 + dy)), height)
                folder = Path(output_dir) / label
                folder.mkdir(parents=True, exist_ok=True)
                crop = np.ascontiguousarray(image[top:bottom, left:right])
                Image.fromarray(crop).save(folder / f"{Path(record['file_name']).stem}_{k}.png")
                written[label] += 1
    return written
