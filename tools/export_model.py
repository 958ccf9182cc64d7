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

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.config import load_config  # noqa: E402
from resnet_det.export.exporter import export_from_config  # noqa: E402


def main(argv=None):
    """Exit status of :func:`export`: 0, or 2 with the message of an expected error."""
    return run_cli(export, argv)


def export(argv=None):
    """Parse arguments, export, print where the files went (exit 2 on a bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", required=True, help="detector yaml")
    p.add_argument("--weights", required=True, help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--output", required=True, help="directory for model.onnx and model.json")
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.opts)
    info = export_from_config(cfg, args.weights, args.output)
    print(f"{info['onnx']} ({info['bytes'] / 2**20:.1f} MiB, exported in {info['seconds']:.1f} s, "
          f"onnx.checker passed) and {info['json']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
