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
from .fuse import fuse_conv_bn
from .vgg import VGG16, build_vgg16



def build_model(arch: dict):
    """Rebuild a network from its ``model.arch`` record (as stored in exported backbone files)."""
    options = dict(arch)
    name = options.pop("name", None)
    builders = {"resnet": build_resnet, "vgg16": build_vgg16}
    if name not in builders:
        raise ValueError(f"unknown architecture name {name!r}; valid: {sorted(builders)}")
    if name == "resnet":
        return build_resnet(options.pop("depth"), **options)
    return build_vgg16(**options)


__all__ = [
    "build_model",
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
    "fuse_conv_bn",
    "make_resnet_stage",
]
