"""detectron2 glue: our ResNet (C4, FPN) and VGG-16 backbones, the RoI heads, and the inference
post-processing that the deploy step and the ONNX export share.

Importing this package registers ``build_resnet_det_backbone``, ``build_resnet_det_fpn_backbone``,
``build_vgg16_backbone`` (BACKBONE_REGISTRY), ``ResNetDetRes5ROIHeads`` (ROI_HEADS_REGISTRY) and
``VGG16BoxHead`` (ROI_BOX_HEAD_REGISTRY); importing it again is harmless.
"""
from resnet_det.modeling.backbone import (
                                          VGG16Backbone,
                                          build_resnet_det_backbone,
                                          build_resnet_det_fpn_backbone,
                                          build_vgg16_backbone,
)
from resnet_det.modeling.roi_heads import ResNetDetRes5ROIHeads, VGG16BoxHead

__all__ = ["ResNetDetRes5ROIHeads", "VGG16Backbone", "VGG16BoxHead", "build_resnet_det_backbone",
           "build_resnet_det_fpn_backbone", "build_vgg16_backbone"]
