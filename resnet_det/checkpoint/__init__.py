"""Weight files: safe loading, the checkpointer of both training stages, the backbone file handed
from pretraining to detection, and converters for weights from elsewhere."""
from resnet_det.checkpoint.backbone_file import BACKBONE_FORMAT, save_backbone
from resnet_det.checkpoint.checkpointer import SafeCheckpointer, prune_checkpoints
from resnet_det.checkpoint.io import (
           UnsafeWeightsError,
           WeightsFileError,
           load_state_dict_checked,
           load_state_dict_file,
           read_safetensors_metadata,
           save_safetensors,
)
from resnet_det.checkpoint.torchvision import from_torchvision, to_torchvision

__all__ = ["BACKBONE_FORMAT", "SafeCheckpointer", "prune_checkpoints", "save_backbone", "UnsafeWeightsError",
           "WeightsFileError", "from_torchvision", "load_state_dict_checked", "load_state_dict_file",
           "read_safetensors_metadata", "save_safetensors", "to_torchvision"]
