"""Pictures of datasets: the dataset browser (``tools/browse_dataset.py``), drawn with
:mod:`resnet_det.utils.draw`."""
