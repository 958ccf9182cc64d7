"""Networks of the paper: the ResNet family (Table 1), plain nets, CIFAR ResNets and VGG-16."""
from .resnet import (
    FEATURE_STRIDES,
    NORMS,
    RESNET_SPECS,
    SHORTCUTS,
    STAGE_NAMES,
    ResNet,
    build_resnet,
    build_resnet_stem_and_stages,
    make_resnet_stage,
)
from .vgg import VGG16, build_vgg16

__all__ = [
    "FEATURE_STRIDES",
    "NORMS",
    "RESNET_SPECS",
    "SHORTCUTS",
    "STAGE_NAMES",
    "ResNet",
    "VGG16",
    "build_resnet",
    "build_resnet_stem_and_stages",
    "build_vgg16",
    "make_resnet_stage",
]
