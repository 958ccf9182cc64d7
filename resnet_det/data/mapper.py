"""A detectron2 DatasetMapper that reads hostile image files safely: in training an unreadable
image is skipped (None: the training loader takes the next one); in evaluation or strict mode it
raises, because skipping would change the metric (docs/bad_inputs.md).
"""
import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T

from resnet_det.utils.image import MAX_PIXELS, ImageError, read_image_checked

__all__ = ["RobustDatasetMapper"]

logger = logging.getLogger(__name__)


class RobustDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper for detection boxes, reading with :func:`read_image_checked`
    (the project's one image policy) and skipping or raising on bad files. Semantic
    segmentation and precomputed proposals (not part of Faster R-CNN here) are refused."""

    @configurable
    def __init__(self, is_train, *, strict=False, max_image_pixels=None, **kwargs):
        super().__init__(is_train, **kwargs)
        if self.proposal_topk is not None:
            raise ValueError("MODEL.LOAD_PROPOSALS is not supported by this mapper")
        self.strict = strict
        self.max_image_pixels = max_image_pixels or None
        self.num_skipped = 0

    @classmethod
    def from_config(cls, cfg, is_train=True):
        """DatasetMapper's arguments plus DATASETS.STRICT and DATASETS.MAX_IMAGE_PIXELS."""
        ret = super().from_config(cfg, is_train)
        ret["strict"] = bool(cfg.DATASETS.get("STRICT", False))
        ret["max_image_pixels"] = cfg.DATASETS.get("MAX_IMAGE_PIXELS", MAX_PIXELS)
        return ret

    def __call__(self, dataset_dict):
        """Map one dataset dict; returns None for a skipped image (training, not strict)."""
        expected = (dataset_dict["height"], dataset_dict["width"]) if "height" in dataset_dict else None
        try:
            image = read_image_checked(dataset_dict["file_name"], self.image_format, expected,
                                       self.max_image_pixels, strict=self.strict)
        except ImageError as e:
            if self.strict or not self.is_train:
                raise
            self.num_skipped += 1
            logger.warning(f"skipped image #{self.num_skipped} in this worker: {e}")
            return None
        dataset_dict = copy.deepcopy(dataset_dict)
        aug_input = T.AugInput(image)
        transforms = self.augmentations(aug_input)
        image = aug_input.image
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if self.is_train and "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image.shape[:2])  # detectron2's
        else:
            dataset_dict.pop("annotations", None)
        return dataset_dict
