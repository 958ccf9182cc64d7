"""Key mapping between torchvision's ResNet/VGG-16 state dicts and this package's models.

ResNet maps onto ``build_resnet(depth, stride_in_1x1=False)`` (torchvision's v1.5 placement);
VGG-16 maps onto ``build_vgg16()``. The mapping is a pure renaming: tensors are shared.
"""
from __future__ import annotations

import re

from resnet_det.models.vgg import CONV_NAMES

__all__ = ["from_torchvision", "to_torchvision", "is_torchvision_resnet", "is_torchvision_vgg16"]

# torchvision's module names -> ours, at the top level and inside a block (layer<i>.<j> = res<i+1>.<j>).
_TV_TOP = {"conv1": "stem.conv1", "bn1": "stem.conv1.norm", "fc": "linear"}
_TV_BLOCK = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm"}
_TV_BLOCK.update({f"conv{k}": f"conv{k}" for k in (1, 2, 3)} | {f"bn{k}": f"conv{k}.norm" for k in (1, 2, 3)})
_OURS_TOP, _OURS_BLOCK = ({v: k for k, v in names.items()} for names in (_TV_TOP, _TV_BLOCK))
_PARAM = r"(weight|bias|running_mean|running_var|num_batches_tracked)"


def _resnet_key(key, to_ours: bool):
    """A ResNet key renamed to our layout (``to_ours``) or to torchvision's; None if not one."""
    m = re.fullmatch(rf"(?:{'layer' if to_ours else 'res'}(\d)\.(\d+)\.)?(.+)\.{_PARAM}", key)
    if m is None:
        return None
    names = (_TV_BLOCK if m[1] else _TV_TOP) if to_ours else (_OURS_BLOCK if m[1] else _OURS_TOP)
    if m[3] not in names:
        return None
    if not m[1]:
        return f"{names[m[3]]}.{m[4]}"
    stage = f"res{int(m[1]) + 1}" if to_ours else f"layer{int(m[1]) - 1}"
    return f"{stage}.{m[2]}.{names[m[3]]}.{m[4]}"


# torchvision's vgg16: features.<index> holds the convolutions, classifier.0/3/6 fc6/fc7/fc8.
_VGG_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_VGG_TV_TO_OURS = {f"features.{i}": name for i, name in zip(_VGG_CONV_INDICES, CONV_NAMES)}
_VGG_TV_TO_OURS.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
_VGG_OURS_TO_TV = {v: k for k, v in _VGG_TV_TO_OURS.items()}


def _vgg_key(key, names):
    """A VGG-16 key renamed by ``names`` (module -> module); None if not one."""
    module, _, param = key.rpartition(".")
    return f"{names[module]}.{param}" if module in names and param in ("weight", "bias") else None


def _rename(state_dict, rename_key, what):
    out, unknown = {}, []
    for key, value in state_dict.items():
        new_key = rename_key(key)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) are not part of a {what} state dict: {sorted(unknown)[:10]}")
    return out


def is_torchvision_resnet(state_dict) -> bool:
    """True if the keys look like torchvision's ResNet (``layer1.0.conv1.weight``...)."""
    return "conv1.weight" in state_dict and any(k.startswith("layer1.") for k in state_dict)


def is_torchvision_vgg16(state_dict) -> bool:
    """True if the keys look like torchvision's VGG (``features.0.weight``, ``classifier.*``)."""
    return "features.0.weight" in state_dict


def from_torchvision(state_dict):
    """Rename a torchvision ResNet (any depth) or VGG-16 state dict to this package's names.

    Keys that belong to neither layout raise a ``ValueError`` listing them.
    """
    if is_torchvision_vgg16(state_dict):
        return _rename(state_dict, lambda k: _vgg_key(k, _VGG_TV_TO_OURS), "torchvision vgg16")
    if is_torchvision_resnet(state_dict):
        return _rename(state_dict, lambda k: _resnet_key(k, to_ours=True), "torchvision ResNet")
    raise ValueError("not a torchvision ResNet or VGG-16 state dict (expected keys like 'layer1.0.conv1.weight' "
                     f"or 'features.0.weight'); first keys: {list(state_dict)[:5]}")


def to_torchvision(state_dict):
    """The inverse of :func:`from_torchvision`: this package's ResNet/VGG-16 names to torchvision's."""
    if "conv1_1.weight" in state_dict:
        return _rename(state_dict, lambda k: _vgg_key(k, _VGG_OURS_TO_TV), "resnet_det VGG16")
    if "stem.conv1.weight" in state_dict:
        return _rename(state_dict, lambda k: _resnet_key(k, to_ours=False), "resnet_det ResNet")
    raise ValueError("not a resnet_det ResNet or VGG16 state dict (expected 'stem.conv1.weight' or "
                     f"'conv1_1.weight'); first keys: {list(state_dict)[:5]}")

