"""Pictures of datasets and detectors: the dataset browser and the ground-truth-vs-detections
grid (drawn with :mod:`resnet_det.utils.draw`)."""
