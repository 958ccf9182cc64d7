"""Key mapping between torchvision's ResNet/VGG-16 state dicts and this package's models.

ResNet maps onto ``build_resnet(depth, stride_in_1x1=False)`` (torchvision's v1.5 placement);
VGG-16 maps onto ``build_vgg16()``. The mapping is a pure renaming: tensors are shared.
"""
from __future__ import annotations

import re

from ..models.vgg import CONV_NAMES

__all__ = ["from_torchvision", "to_torchvision", "is_torchvision_resnet", "is_torchvision_vgg16"]

_PARAM = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"
_TV_KEY = re.compile(
    rf"(?:layer(?P<s>\d)\.(?P<b>\d+)\.)?(?P<m>conv\d|bn\d|downsample\.[01]|fc)\.{_PARAM}"
)
_OUR_KEY = re.compile(
    rf"(?:(?P<stem>stem)\.|res(?P<s>\d)\.(?P<b>\d+)\.)?"
    rf"(?P<m>conv\d(?:\.norm)?|shortcut(?:\.norm)?|linear)\.{_PARAM}"
)
# Module names inside a block (and at the top level) in both layouts.
_TV_TO_OURS_MODULE = {"downsample.0": "shortcut", "downsample.1": "shortcut.norm", "fc": "linear"}
_TV_TO_OURS_MODULE.update({f"conv{k}": f"conv{k}" for k in (1, 2, 3)})
_TV_TO_OURS_MODULE.update({f"bn{k}": f"conv{k}.norm" for k in (1, 2, 3)})
_OURS_TO_TV_MODULE = {v: k for k, v in _TV_TO_OURS_MODULE.items()}


def _resnet_key_from_tv(key):
    m = _TV_KEY.fullmatch(key)
    if m is None:
        return None
    module = _TV_TO_OURS_MODULE[m["m"]]
    if m["s"] is not None:
        return f"res{int(m['s']) + 1}.{m['b']}.{module}.{m['p']}"
    if module == "linear":
        return f"linear.{m['p']}"
    return f"stem.{module}.{m['p']}" if m["m"] in ("conv1", "bn1") else None


def _resnet_key_to_tv(key):
    m = _OUR_KEY.fullmatch(key)
    if m is None or m["m"] not in _OURS_TO_TV_MODULE:
        return None
    module = _OURS_TO_TV_MODULE[m["m"]]
    if m["s"] is not None:
        return f"layer{int(m['s']) - 1}.{m['b']}.{module}.{m['p']}"
    if m["stem"]:
        return f"{module}.{m['p']}" if module in ("conv1", "bn1") else None
    return f"fc.{m['p']}" if module == "fc" else None


# torchvision's vgg16: features.<index> holds the convolutions, classifier.0/3/6 fc6/fc7/fc8.
_VGG_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_VGG_TV_TO_OURS = {f"features.{i}": name for i, name in zip(_VGG_CONV_INDICES, CONV_NAMES)}
_VGG_TV_TO_OURS.update({"classifier.0": "fc6", "classifier.3": "fc7", "classifier.6": "fc8"})
_VGG_OURS_TO_TV = {v: k for k, v in _VGG_TV_TO_OURS.items()}


def _rename(state_dict, rename_key, what):
    out, unknown = {}, []
    for key, value in state_dict.items():
        new_key = rename_key(key)
        if new_key is None:
            unknown.append(key)
        else:
            out[new_key] = value
    if unknown:
        raise ValueError(
            f"{len(unknown)} key(s) are not part of a {what} state dict: {sorted(unknown)[:10]}"
        )
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
        return _rename_prefixes(state_dict, _VGG_TV_TO_OURS, "torchvision vgg16")
    if is_torchvision_resnet(state_dict):
        return _rename(state_dict, _resnet_key_from_tv, "torchvision ResNet")
    raise ValueError(
        "not a torchvision ResNet or VGG-16 state dict (expected keys like 'layer1.0.conv1.weight' "
        f"or 'features.0.weight'); first keys: {list(state_dict)[:5]}"
    )


def to_torchvision(state_dict):
    """The inverse of :func:`from_torchvision`: this package's ResNet/VGG-16 names to torchvision's."""
    if "conv1_1.weight" in state_dict:
        return _rename_prefixes(state_dict, _VGG_OURS_TO_TV, "resnet_det VGG16")
    if "stem.conv1.weight" in state_dict:
        return _rename(state_dict, _resnet_key_to_tv, "resnet_det ResNet")
    raise ValueError(
        "not a resnet_det ResNet or VGG16 state dict (expected 'stem.conv1.weight' or "
        f"'conv1_1.weight'); first keys: {list(state_dict)[:5]}"
    )


def _rename_prefixes(state_dict, mapping, what):
    def rename_key(key):
        prefix, _, param = key.rpartition(".")
        if prefix in mapping and param in ("weight", "bias"):
            return f"{mapping[prefix]}.{param}"
        return None

    return _rename(state_dict, rename_key, what)
