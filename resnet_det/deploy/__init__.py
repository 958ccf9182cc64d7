"""Deploy: the exported detector run without torch or detectron2 (numpy, Pillow, onnxruntime).

``OnnxDetector("out/model.onnx")(image)`` runs a detector that ``tools/export_model.py`` wrote;
:mod:`resnet_det.deploy.detect` runs it over a folder (``resnet-det-detect``).
"""
from resnet_det.deploy.runtime import (
                                       PRECISIONS,
                                       RUNTIMES,
                                       DeployError,
                                       OnnxDetector,
                                       read_image,
                                       resize_shortest_edge,
                                       runtime_choices,
)
from resnet_det.utils.image import ImageError

__all__ = ["PRECISIONS", "RUNTIMES", "DeployError", "ImageError", "OnnxDetector", "read_image",
           "resize_shortest_edge", "runtime_choices"]
