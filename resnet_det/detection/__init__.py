"""detectron2 glue: our ResNet (C4, FPN) and VGG-16 backbones, RoI heads, trainer.

Importing this package registers ``build_resnet_det_backbone``, ``build_resnet_det_fpn_backbone``,
``build_vgg16_backbone`` (BACKBONE_REGISTRY), ``ResNetDetRes5ROIHeads`` (ROI_HEADS_REGISTRY) and
``VGG16BoxHead`` (ROI_BOX_HEAD_REGISTRY), and makes detectron2's ``COCOEvaluator`` evaluate with
faster-coco-eval where detectron2's own fast evaluator is not built; importing it again is harmless.
"""
from .backbone import (  # noqa: F401
    VGG16Backbone,
    build_resnet_det_backbone,
    build_resnet_det_fpn_backbone,
    build_vgg16_backbone,
)
from .roi_heads import ResNetDetRes5ROIHeads, VGG16BoxHead  # noqa: F401
from ..evaluation.coco import use_in_detectron2

use_in_detectron2()
