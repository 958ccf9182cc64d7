"""Data of both stages: detection datasets (registration, checks, the VOC reader, the robust mapper
and the exactly resumable training loader) and ImageNet-layout pretraining data (folders,
transforms, samplers)."""
from resnet_det.data.datasets import DatasetError
from resnet_det.utils.image import ImageError

__all__ = ["DatasetError", "ImageError"]
