"""Deploy: the ONNX Runtime detector (numpy, Pillow, onnxruntime only; no torch, no detectron2).

``OnnxDetector("out/model.onnx")(image)`` runs a detector exported by ``tools/export_model.py``
(``resnet_det.deploy.export``, which needs torch and detectron2, is imported only by the exporter).
"""
from ..common.image import ImageError  # noqa: F401
from .runtime import DeployError, OnnxDetector, read_image, resize_shortest_edge  # noqa: F401

__all__ = ["DeployError", "ImageError", "OnnxDetector", "read_image", "resize_shortest_edge"]
