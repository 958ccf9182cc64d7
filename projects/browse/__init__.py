"""Look at a detection dataset before training on it (``tools/browse_dataset.py``): its ground
truth drawn, optionally after the training augmentation, or its boxes cut out as an
ImageNet-layout folder for classification pretraining."""
from projects.browse.crops import BACKGROUND, export_crops
from projects.browse.draw import browse_dataset

__all__ = ["BACKGROUND", "browse_dataset", "export_crops"]
