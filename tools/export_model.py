#!/usr/bin/env python
"""Export a trained Faster R-CNN (C4, FPN or VGG-16) to ONNX for ONNX Runtime.

    python tools/export_model.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml \
        --weights output/toy_r18_c4_coco/model_final.pth --output output/onnx_r18_c4 [KEY VALUE ...]

Writes DIR/model.onnx (the whole detector: normalisation, backbone, RPN, NMS, RoIAlign, box
head, per-class NMS; any image size, batch 1) and DIR/model.json (class names, test resize,
thresholds), then checks the graph with onnx.checker. Run it with resnet_det.deploy.OnnxDetector
or tools/demo.py --onnx; measure it with tools/eval_onnx.py.
"""
import argparse
import sys

from resnet_det.checkpoint import UnsafeWeightsError
from resnet_det.checkpoint.detectron2 import WeightsMismatchError
from resnet_det.config import ConfigError, load_config
from resnet_det.data.datasets import DatasetError
from resnet_det.deploy import DeployError
from resnet_det.deploy.export import export_from_config


def main(argv=None):
    """Parse arguments, export, print where the files went (exit 2 on a bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", required=True, help="detector yaml")
    p.add_argument("--weights", required=True, help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--output", required=True, help="directory for model.onnx and model.json")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.opts)
        info = export_from_config(cfg, args.weights, args.output)
    except (ConfigError, DatasetError, DeployError, WeightsMismatchError, UnsafeWeightsError,
            FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{info['onnx']} ({info['bytes'] / 2**20:.1f} MiB, exported in {info['seconds']:.1f} s, "
          f"onnx.checker passed) and {info['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
