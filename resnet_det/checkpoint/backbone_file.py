"""The backbone file handed from classification pretraining to the detector.

``<name>.safetensors`` holds the network's state dict without its classifier head (keys
``stem.*``, ``res2.*``..``res5.*`` or ``conv1_1.*``..``fc7.*``) and, in its metadata, the
architecture options; ``<name>.json`` beside it repeats them for people and other tools.
"""
from __future__ import annotations

import json
from pathlib import Path

from resnet_det.checkpoint.io import save_safetensors
from resnet_det.utils.files import atomic_write

__all__ = ["BACKBONE_FORMAT", "CLASSIFIER_PREFIXES", "backbone_metadata", "save_backbone"]

BACKBONE_FORMAT = "resnet_det.backbone/1"
# Classifier layers dropped on export: ResNet's ``linear``, VGG-16's ``fc8``.
CLASSIFIER_PREFIXES = ("linear.", "fc8.")
# Pretraining normalises RGB images in 0..255 with these (torchvision's ImageNet statistics),
# so a detector using the backbone must set INPUT.FORMAT RGB and the same PIXEL_MEAN/STD.
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
# detectron2's MSRA/Caffe2 ImageNet models: BGR in 0..255, mean subtracted, no scaling.
MSRA_PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
MSRA_PIXEL_STD_BGR = (1.0, 1.0, 1.0)


def backbone_metadata(arch: dict, *, msra: bool = False) -> dict:
    """A backbone file's record: ``arch`` and the input normalisation its weights were trained
    with (torchvision's RGB mean/std; with ``msra``, MSRA/Caffe2's BGR mean subtraction)."""
    return {"format": BACKBONE_FORMAT, "arch": arch, "input_format": "BGR" if msra else "RGB",
            "pixel_mean": list(MSRA_PIXEL_MEAN_BGR if msra else PIXEL_MEAN_RGB),
            "pixel_std": list(MSRA_PIXEL_STD_BGR if msra else PIXEL_STD_RGB)}


def save_backbone(model, path, extra: dict | None = None) -> Path:
    """Export ``model`` (a ResNet or VGG16 of this package) without its classifier head."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(CLASSIFIER_PREFIXES)}
    meta = {**backbone_metadata(dict(model.arch, num_classes=0)), **(extra or {})}
    save_safetensors(state, path, metadata=meta)
    with atomic_write(path.with_suffix(".json"), mode="w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    return path

