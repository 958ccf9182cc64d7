"""resnet_det: ResNet and VGG-16 from classification pretraining to Faster R-CNN on detectron2.

Importing the package registers its backbones and RoI heads with detectron2 (idempotently).
"""
__version__ = "0.1.0"

from . import models  # noqa: E402,F401
