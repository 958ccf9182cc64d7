"""Networks of the paper: the ResNet family (Table 1, shortcut options A/B/C, plain nets) and VGG-16."""
from resnet_det.models.fuse import fuse_conv_bn, optimize_for_inference
from resnet_det.models.resnet import (
    NORMS,
    RESNET_SPECS,
    SHORTCUTS,
    STAGE_NAMES,
    ResNet,
    build_resnet,
    build_resnet_stem_and_stages,
    make_resnet_stage,
    resnet_arch,
)
from resnet_det.models.vgg import VGG16, build_vgg16

# Builders by the ``name`` recorded in ``model.arch``.
_BUILDERS = {"resnet": build_resnet, "vgg16": build_vgg16}


def build_model(arch: dict):
    """Rebuild a network from its ``model.arch`` record (as stored in exported backbone files)."""
    options = dict(arch)
    name = options.pop("name", None)
    if name not in _BUILDERS:
        raise ValueError(f"unknown architecture name {name!r}; valid: {sorted(_BUILDERS)}")
    return _BUILDERS[name](**options)


def architecture(model):
    """The ``arch`` record of a network of this package: a classifier, a backbone, or a detector
    whose backbone (or its FPN's bottom-up network) is ours; None for other networks."""
    backbone = getattr(model, "backbone", None)
    for module in (model, backbone, getattr(backbone, "bottom_up", None)):
        if module is not None and isinstance(getattr(module, "arch", None), dict):
            return module.arch
    return None


__all__ = ["NORMS", "RESNET_SPECS", "SHORTCUTS", "STAGE_NAMES", "ResNet", "VGG16", "architecture", "build_model",
           "build_resnet", "build_resnet_stem_and_stages", "build_vgg16", "fuse_conv_bn", "make_resnet_stage",
           "optimize_for_inference", "resnet_arch"]
