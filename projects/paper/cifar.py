"""CIFAR-10 ResNets and plain nets of the paper's section 4.2 (depth 6n+2).

A 3x3 convolution with 16 filters, then three stages of ``n`` basic blocks with 16/32/64 filters
on 32/16/8-pixel maps, global average pooling and a fully connected classifier. The blocks are
the same :class:`~resnet_det.models.resnet.BasicBlock` as ResNet-18/34, so the plain/shortcut
options and the layer-response hooks work identically on both families.
"""
from __future__ import annotations

import torch.nn.functional as F
from detectron2.layers import CNNBlockBase, Conv2d, get_norm
from detectron2.modeling.backbone.resnet import ResNet as _D2ResNet
from fvcore.nn import weight_init

from resnet_det.models.resnet import NORMS, SHORTCUTS, BasicBlock, ResNet

__all__ = ["CIFAR_DEPTHS", "CIFAR_WIDTHS", "CifarStem", "CifarResNet", "build_cifar_resnet"]

# The depths of the paper's Table 6; any 6n+2 is accepted.
CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
CIFAR_WIDTHS = (16, 32, 64)


class CifarStem(CNNBlockBase):
    """The first layer of the CIFAR nets: 3x3 conv, 16 filters, BN, ReLU, stride 1 (no pooling)."""

    def __init__(self, in_channels=3, out_channels=16, norm="BN"):
        super().__init__(in_channels, out_channels, 1)
        self.conv1 = Conv2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=1,
            padding=1,
            bias=False,
            norm=get_norm(norm, out_channels),
        )
        weight_init.c2_msra_fill(self.conv1)

    def forward(self, x):
        return F.relu_(self.conv1(x))


class CifarResNet(ResNet):
    """A CIFAR ResNet/plain net; stages are named ``res2``..``res4`` (strides 1, 2, 4)."""

    def __init__(self, stem, stages, num_classes=10, **arch):
        super().__init__(stem, stages, num_classes=num_classes, **arch)
        self.arch["name"] = "cifar_resnet"


def build_cifar_resnet(
    depth: int,
    plain: bool = False,
    num_classes: int = 10,
    norm: str = "BN",
    shortcut: str = "A",
    in_channels: int = 3,
) -> CifarResNet:
    """The paper's CIFAR-10 network of ``depth`` = 6n+2 layers (ResNet-20 .. ResNet-1202).

    ``plain=True`` gives the plain counterpart (no shortcuts); ``shortcut`` 'A' (zero padding,
    the paper's CIFAR choice), 'B' or 'C' as in :func:`~resnet_det.models.build_resnet`.
    """
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(
            f"CIFAR ResNet depth must be 6n+2 with n >= 1 (e.g. 8, 14, "
            f"{', '.join(map(str, CIFAR_DEPTHS))}), got {depth!r}"
        )
    for name, value, valid in (("norm", norm, NORMS), ("shortcut", shortcut, SHORTCUTS)):
        if value not in valid:
            raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(map(repr, valid))}")
    n = (depth - 2) // 6
    stem = CifarStem(in_channels, CIFAR_WIDTHS[0], norm=norm)
    stages = []
    prev = CIFAR_WIDTHS[0]
    for i, width in enumerate(CIFAR_WIDTHS):
        stages.append(
            _D2ResNet.make_stage(
                BasicBlock,
                n,
                stride_per_block=[1 if i == 0 else 2] + [1] * (n - 1),
                in_channels=prev,
                out_channels=width,
                norm=norm,
                shortcut=shortcut,
                plain=plain,
            )
        )
        prev = width
    arch = dict(depth=depth, plain=plain, norm=norm, shortcut=shortcut, in_channels=in_channels)
    return CifarResNet(stem, stages, num_classes=num_classes, **arch)
