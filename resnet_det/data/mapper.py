"""A detectron2 DatasetMapper that reads hostile image files safely: in training an unreadable
image is skipped (None: detectron2's MapDataset draws another); in evaluation or strict mode
it raises, because skipping would change the metric (docs/bad_inputs.md).
"""
import copy
import logging

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T

from ..common.image import MAX_PIXELS, ImageError, read_image_checked

__all__ = ["RobustDatasetMapper"]

logger = logging.getLogger(__name__)


class RobustDatasetMapper(DatasetMapper):
    """detectron2's DatasetMapper with :func:`read_image_checked` and skip-or-raise on bad files."""

    @configurable
    def __init__(self, is_train, *, strict=False, max_image_pixels=None, **kwargs):
        super().__init__(is_train, **kwargs)
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
        dataset_dict = copy.deepcopy(dataset_dict)
        expected = None
        if "height" in dataset_dict and "width" in dataset_dict:
            expected = (dataset_dict["height"], dataset_dict["width"])
        try:
            image = read_image_checked(dataset_dict["file_name"], self.image_format, expected,
                                       self.max_image_pixels, strict=self.strict)
        except ImageError as e:
            if self.strict or not self.is_train:
                raise
            self.num_skipped += 1
            logger.warning(f"skipped image #{self.num_skipped} in this worker: {e}")
            return None
        # The rest is DatasetMapper.__call__ (detectron2 v0.6+) after its image read.
        if "sem_seg_file_name" in dataset_dict:
            sem_seg_gt = utils.read_image(dataset_dict.pop("sem_seg_file_name"), "L").squeeze(2)
        else:
            sem_seg_gt = None
        aug_input = T.AugInput(image, sem_seg=sem_seg_gt)
        transforms = self.augmentations(aug_input)
        image, sem_seg_gt = aug_input.image, aug_input.sem_seg
        image_shape = image.shape[:2]
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
        if sem_seg_gt is not None:
            dataset_dict["sem_seg"] = torch.as_tensor(sem_seg_gt.astype("long"))
        if self.proposal_topk is not None:
            utils.transform_proposals(
                dataset_dict, image_shape, transforms, proposal_topk=self.proposal_topk
            )
        if not self.is_train:
            dataset_dict.pop("annotations", None)  # sem_seg_file_name was popped above
            return dataset_dict
        if "annotations" in dataset_dict:
            self._transform_annotations(dataset_dict, transforms, image_shape)
        return dataset_dict
