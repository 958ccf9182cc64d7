"""Backbones registered with detectron2: our ResNet (C4 and FPN) and VGG-16 at stride 16.

Module names are detectron2's (``stem``, ``res2``..``res5``; FPN's ``bottom_up``), so a
detectron2 checkpoint of the same design loads unchanged, and VGG-16's layers keep the
paper's names (``conv1_1``..``conv5_3``). Each backbone records its ``arch`` (the options
stored with exported backbone files), which the checkpointer checks weights against.
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import BACKBONE_REGISTRY, Backbone
from detectron2.modeling.backbone import FPN
from detectron2.modeling.backbone.fpn import LastLevelMaxPool
from detectron2.modeling.backbone.resnet import ResNet as D2ResNet
from torch import nn

from resnet_det.config import resnet_options
from resnet_det.modeling.registry import register_once
from resnet_det.models.resnet import STAGE_NAMES, build_resnet_stem_and_stages, resnet_arch
from resnet_det.models.vgg import CONV_NAMES, VGG16, build_vgg16

__all__ = ["VGG16Backbone", "build_resnet_det_backbone", "build_resnet_det_fpn_backbone", "build_vgg16_backbone"]

VGG16_FEATURE = "conv5_3"


@register_once(BACKBONE_REGISTRY)
def build_resnet_det_backbone(cfg, input_shape: ShapeSpec):
    """Our ResNet as a detectron2 backbone, stem..the last stage in MODEL.RESNETS.OUT_FEATURES
    (``["res4"]`` for the paper's C4 design, whose res5 runs in the RoI head)."""
    options = resnet_options(cfg)
    out_features = list(cfg.MODEL.RESNETS.OUT_FEATURES)
    last = max(STAGE_NAMES.index(f) if f in STAGE_NAMES else 0 for f in out_features)
    stem, stages = build_resnet_stem_and_stages(
        stages=STAGE_NAMES[: last + 1], in_channels=input_shape.channels, **options
    )
    backbone = D2ResNet(stem, stages, out_features=out_features, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
    backbone.arch = resnet_arch(in_channels=input_shape.channels, **options)
    return backbone


@register_once(BACKBONE_REGISTRY)
def build_resnet_det_fpn_backbone(cfg, input_shape: ShapeSpec):
    """detectron2's FPN (P2-P6, P6 by max pooling) over our ResNet, as
    ``build_resnet_fpn_backbone`` builds it over detectron2's."""
    bottom_up = build_resnet_det_backbone(cfg, input_shape)
    backbone = FPN(bottom_up=bottom_up,
                   in_features=cfg.MODEL.FPN.IN_FEATURES,
                   out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
                   norm=cfg.MODEL.FPN.NORM,
                   top_block=LastLevelMaxPool(),
                   fuse_type=cfg.MODEL.FPN.FUSE_TYPE)
    return backbone


class VGG16Backbone(Backbone):
    """VGG-16's conv1_1..conv5_3 (no pool5): one feature map ``conv5_3`` at stride 16, 512
    channels, as Faster R-CNN uses it. ``freeze_at`` freezes conv1_x..conv{freeze_at}_x."""

    def __init__(self, in_channels: int = 3, freeze_at: int = 0):
        super().__init__()
        # The classifier's own layers and initialisation; built on the meta device so that its
        # fc6/fc7 (120M parameters, seconds to initialise) cost nothing here.
        with torch.device("meta"):
            vgg = build_vgg16(num_classes=0, in_channels=in_channels)
        for name in CONV_NAMES:
            self.add_module(name, getattr(vgg, name).to_empty(device="cpu"))
        VGG16._init_weights(self)
        self.arch = dict(vgg.arch)
        self._out_features = [VGG16_FEATURE]
        self._out_feature_channels = {VGG16_FEATURE: vgg.out_channels}
        self._out_feature_strides = {VGG16_FEATURE: 16}
        self.freeze(freeze_at)

    def freeze(self, freeze_at: int = 0):
        """Stop gradients to stages conv1_x..conv{freeze_at}_x (detectron2's FREEZE_AT)."""
        for name in CONV_NAMES:
            if int(name[4]) <= freeze_at:
                for p in getattr(self, name).parameters():
                    p.requires_grad_(False)
        return self

    def forward(self, x):
        return {VGG16_FEATURE: VGG16.forward_features(self, x)}

    def __prepare_scriptable__(self):
        """What ``torch.jit.script`` compiles instead: the same layers in a ModuleList (as
        detectron2's export does for its ResNet and FPN)."""
        return _ScriptableVGG16(self)


class _ScriptableVGG16(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.convs = nn.ModuleList([getattr(backbone, name) for name in CONV_NAMES])
        self.pool_before = [name.endswith("_1") and name != "conv1_1" for name in CONV_NAMES]
        self.feature = VGG16_FEATURE

    def forward(self, x) -> Dict[str, torch.Tensor]:
        for i, conv in enumerate(self.convs):
            if self.pool_before[i]:
                x = F.max_pool2d(x, kernel_size=2, stride=2)
            x = F.relu(conv(x))
        return {self.feature: x}


@register_once(BACKBONE_REGISTRY)
def build_vgg16_backbone(cfg, input_shape: ShapeSpec):
    """VGG-16 conv5_3 at stride 16, the paper's baseline; FREEZE_AT counts conv stages."""
    return VGG16Backbone(input_shape.channels, freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT)
