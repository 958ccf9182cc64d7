"""The PyTorch detector as a function of an RGB image, returning what the deploy runner returns
(so that the demo, the grid and the comparisons treat both alike)."""
from __future__ import annotations

import logging

import numpy as np
from detectron2.engine import DefaultPredictor

from resnet_det.checkpoint.detection import ResNetDetCheckpointer
from resnet_det.data.datasets import dataset_class_names
from resnet_det.engine.launch import resolve_device
from resnet_det.utils.image import read_image_checked

__all__ = ["Predictor"]

logger = logging.getLogger(__name__)


class Predictor:
    """detectron2's ``DefaultPredictor`` (its test-time resize and input format) with the weights
    loaded by the safe checkpointer: ``predictor(image)`` (HxWx3 uint8 RGB) ->
    ``{"boxes", "scores", "classes", "class_names"}`` as numpy arrays, like
    :class:`~resnet_det.deploy.OnnxDetector`. ``score_threshold`` overrides
    MODEL.ROI_HEADS.SCORE_THRESH_TEST; files are read under DATASETS.MAX_IMAGE_PIXELS."""

    def __init__(self, cfg, weights: str, score_threshold: float | None = None):
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.DEVICE, note = resolve_device(cfg.MODEL.DEVICE)
        if note:
            logger.info(note)
        cfg.MODEL.WEIGHTS = ""  # DefaultPredictor's own loader would unpickle; ours does not
        if score_threshold is not None:
            cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_threshold
        cfg.freeze()
        self.cfg, self.predictor = cfg, DefaultPredictor(cfg)
        ResNetDetCheckpointer(self.predictor.model).load(weights)
        self.class_names = dataset_class_names(cfg)
        if self.class_names is None:
            logger.warning("no class names in the metadata of %s: class ids are shown", list(cfg.DATASETS.TEST))

    @property
    def model(self):
        """The detectron2 model (eval mode)."""
        return self.predictor.model

    def read(self, path) -> np.ndarray:
        """An image file as HxWx3 uint8 RGB under DATASETS.MAX_IMAGE_PIXELS."""
        return read_image_checked(str(path), "RGB", max_pixels=self.cfg.DATASETS.MAX_IMAGE_PIXELS or None)

    def __call__(self, image: np.ndarray) -> dict:
        """Detections on one RGB image, boxes in its pixels, by decreasing score."""
        # DefaultPredictor takes BGR (OpenCV's order) and converts to the model's INPUT.FORMAT: a
        # reversed view, flipped back for an RGB model, copies no pixels of a big photo.
        instances = self.predictor(image[:, :, ::-1])["instances"].to("cpu")
        return {"boxes": instances.pred_boxes.tensor.numpy(), "scores": instances.scores.numpy(),
                "classes": instances.pred_classes.numpy(), "class_names": self.class_names}
