"""Applications built on the resnet_det library's public API (detectron2's ``projects/``):
the main job (``demo``), the paper's experiments (``paper``) and the toy-data generator
(``toy_data``) that the tests, the demo and the docs use. Not installed with the package; run
from the repository (the tools put its root on the path)."""
