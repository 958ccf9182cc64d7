"""RoI heads: res5 of our ResNet as the C4 head (as in the paper); VGG-16's fc6/fc7 box head."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_BOX_HEAD_REGISTRY, ROI_HEADS_REGISTRY
from detectron2.modeling.roi_heads import Res5ROIHeads
from torch import nn

from resnet_det.config import resnet_options
from resnet_det.modeling.registry import register_once
from resnet_det.models.resnet import make_resnet_stage, zero_init_last_norm
from resnet_det.models.vgg import POOLED_SIZE, VGG16, build_vgg16

__all__ = ["ResNetDetRes5ROIHeads", "VGG16BoxHead"]


@register_once(ROI_HEADS_REGISTRY)
class ResNetDetRes5ROIHeads(Res5ROIHeads):
    """detectron2's C4 RoI heads with res5 built by our ResNet (any depth, shortcut option,
    plain or not): RoI pooling on res4, res5, global average pooling, box predictor.
    Module keys are detectron2's (``roi_heads.res5.*``)."""

    @classmethod
    def _build_res5_block(cls, cfg):
        options = resnet_options(cfg)
        zero_init = options.pop("zero_init_residual")
        blocks = make_resnet_stage(options.pop("depth"), "res5", **options)
        if zero_init:
            for block in blocks:
                zero_init_last_norm(block)
        if cfg.MODEL.BACKBONE.FREEZE_AT >= 5:
            blocks = [block.freeze() for block in blocks]
        return nn.Sequential(*blocks), blocks[-1].out_channels


@register_once(ROI_BOX_HEAD_REGISTRY)
class VGG16BoxHead(nn.Module):
    """VGG-16's fc6 and fc7 (ReLU, dropout MODEL.VGG.DROPOUT) on 512x7x7 pooled RoI features,
    as in Fast/Faster R-CNN; keys ``fc6.*``/``fc7.*`` match the pretrained classifier's."""

    def __init__(self, cfg, input_shape: ShapeSpec):
        super().__init__()
        shape = (input_shape.channels, input_shape.height, input_shape.width)
        if shape != (512, POOLED_SIZE, POOLED_SIZE):
            raise ValueError(f"VGG16BoxHead needs 512x{POOLED_SIZE}x{POOLED_SIZE} pooled features (fc6's "
                             f"input), got {shape}: set MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION {POOLED_SIZE} "
                             "and MODEL.BACKBONE.NAME build_vgg16_backbone")
        # Only fc6/fc7 are needed: build the classifier on the meta device, then materialise
        # and initialise just those two layers as VGG16 does.
        with torch.device("meta"):
            vgg = build_vgg16(num_classes=0, dropout=cfg.MODEL.VGG.DROPOUT)
        self.fc6, self.fc7 = vgg.fc6.to_empty(device="cpu"), vgg.fc7.to_empty(device="cpu")
        self.dropout = vgg.dropout
        VGG16._init_weights(self)

    def forward(self, x):
        x = torch.flatten(x, 1)
        x = self.dropout(F.relu(self.fc6(x), inplace=True))
        return self.dropout(F.relu(self.fc7(x), inplace=True))

    @property
    @torch.jit.unused
    def output_shape(self):
        return ShapeSpec(channels=self.fc7.out_features)
