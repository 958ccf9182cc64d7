#!/usr/bin/env python
"""Export a trained Faster R-CNN (C4, FPN or VGG-16) to ONNX for ONNX Runtime.

    python tools/export_model.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml \
        --weights output/toy_r18_c4_coco/model_final.pth --output output/onnx_r18_c4 [KEY VALUE ...]

Writes DIR/model.onnx (the whole detector: normalisation, backbone, RPN, NMS, RoIAlign, box
head, per-class NMS; any image size, batch 1) and DIR/model.json (class names, test resize,
thresholds), then checks the graph with onnx.checker. Run it with resnet_det.deploy.OnnxDetector
or tools/demo.py --onnx; measure it with tools/eval_onnx.py.
"""
import sys

from resnet_det.utils.cli import silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.export.exporter import command_line  # noqa: E402

if __name__ == "__main__":
    sys.exit(command_line(doc=__doc__))
