"""Draw a registered dataset's ground truth (boxes and class names), optionally after the
training augmentation, so a user sees that the annotations are right before training
(``tools/browse_dataset.py``, like detectron2's tools/visualize_data.py)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.detection_utils import convert_image_to_rgb
from PIL import Image

from projects.browse.crops import read_record_image
from resnet_det.data.datasets import ground_truth, split_datasets
from resnet_det.data.mapper import RobustDatasetMapper
from resnet_det.utils.draw import MAX_SIDE, class_color, class_name, draw_boxes

__all__ = ["browse_dataset"]


def browse_dataset(cfg, output_dir, split="train", augment=False, num=None, max_side=MAX_SIDE) -> dict:
    """Write ``output_dir/<dataset>/<image>.png`` for the images of DATASETS.TRAIN (``split``
    "train") or DATASETS.TEST ("test"), with their ground-truth boxes and class names, one
    colour per class; with ``augment``, after the training mapper (resize, flip) instead.
    ``num`` limits the images. Returns {"images": paths written, "boxes_per_class": Counter}."""
    mapper = RobustDatasetMapper(cfg, is_train=True) if augment else None
    written, per_class = [], Counter()
    for name in split_datasets(cfg, split):
        class_names = list(MetadataCatalog.get(name).get("thing_classes", []) or [])
        folder = Path(output_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        for record in DatasetCatalog.get(name):  # the checked loaders: what training reads
            if num is not None and len(written) >= num:
                break
            if mapper is None:
                image = read_record_image(cfg, record)
                if image is None:
                    continue
                boxes, class_ids = ground_truth(record)
            else:
                mapped = mapper(record)
                if mapped is None:  # unreadable image: the mapper logged it, training skips it
                    continue
                image = convert_image_to_rgb(mapped["image"].permute(1, 2, 0), cfg.INPUT.FORMAT)
                boxes, class_ids = mapped["instances"].gt_boxes.tensor.tolist(), mapped["instances"].gt_classes.tolist()
            labels = [class_name(class_names, c) for c in class_ids]
            path = folder / (Path(record["file_name"]).stem + ".png")
            drawn = draw_boxes(np.asarray(image), boxes, labels, [class_color(c) for c in class_ids], max_side=max_side)
            Image.fromarray(drawn).save(path)
            written.append(path)
            per_class.update(labels)
    return {"images": written, "boxes_per_class": per_class}
