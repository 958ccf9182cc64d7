"""Weight files: safe loading, atomic saving, the checkpointer of both training stages, and
converters for weights from elsewhere."""
from .checkpointer import SafeCheckpointer, prune_checkpoints
from .export import BACKBONE_FORMAT, load_backbone, save_backbone
from .io import (UnsafeWeightsError, WeightsFileError, atomic_write, load_state_dict_checked, load_state_dict_file,
                 read_safetensors_metadata, save_safetensors)
from .torchvision import from_torchvision, to_torchvision

__all__ = ["BACKBONE_FORMAT", "SafeCheckpointer", "prune_checkpoints", "load_backbone", "save_backbone",
           "UnsafeWeightsError", "WeightsFileError", "atomic_write", "from_torchvision", "load_state_dict_checked",
           "load_state_dict_file", "read_safetensors_metadata", "save_safetensors", "to_torchvision"]
