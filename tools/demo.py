#!/usr/bin/env python
"""Draw a trained detector's detections on images.

    python tools/demo.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml \
        --weights output/toy_r18_c4_coco/model_final.pth --input datasets/toy/coco/val2017 \
        --output output/demo [--confidence-threshold 0.5] [KEY VALUE ...]
    python tools/demo.py --onnx output/onnx_r18_c4/model.onnx --input IMAGES --output OUT

Writes one PNG per image (boxes, class names, scores) and detections.json to --output.
With --onnx the model exported by tools/export_model.py runs on ONNX Runtime (no --config,
no --weights; needs numpy, Pillow and onnxruntime only).
"""
import argparse
import logging
import sys

from resnet_det.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn (torch-free itself)

def main(argv=None):
    """Exit status of :func:`demo`: 0, or 2 with the message of an expected error."""
    return run_cli(demo, argv)


def demo(argv=None):
    """Parse arguments, run the PyTorch or the ONNX demo, print a summary (exit 2 on a bad input)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", help="detector yaml")
    p.add_argument("--weights", help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--onnx", help="model.onnx from tools/export_model.py (instead of --config/--weights)")
    p.add_argument("--input", required=True, help="an image file or a directory of images")
    p.add_argument("--output", required=True, help="directory for the drawn images and json")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    if args.onnx:
        if args.config or args.weights or args.opts:
            p.error("--onnx runs the exported model: --config, --weights and overrides do not apply")
        from resnet_det.deploy.demo import run_onnx_demo

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        records = run_onnx_demo(args.onnx, args.input, args.output, args.confidence_threshold)
    else:
        if not (args.config and args.weights):
            p.error("--config and --weights are required (or --onnx FILE)")
        from detectron2.utils.logger import setup_logger

        from resnet_det.config import load_config
        from resnet_det.detection.demo import run_demo

        setup_logger(name="resnet_det")
        cfg = load_config(args.config, args.opts)
        records = run_demo(cfg, args.weights, args.input, args.output, args.confidence_threshold)
    total = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} image(s), {total} detection(s) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
