#!/usr/bin/env python
"""Draw a trained detector's detections on images.

    python tools/demo.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml \
        --weights output/toy_r18_c4_coco/model_final.pth --input datasets/toy/coco/val2017 \
        --output output/demo [--confidence-threshold 0.5] [KEY VALUE ...]

Writes one PNG per image (boxes, class names, scores) and detections.json to --output.
"""
import argparse
import sys

from resnet_det.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.utils.logger import setup_logger  # noqa: E402

from resnet_det.config import load_config  # noqa: E402
from resnet_det.detection.demo import run_demo  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", required=True, help="detector yaml")
    p.add_argument("--weights", required=True, help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--input", required=True, help="an image file or a directory of images")
    p.add_argument("--output", required=True, help="directory for the drawn images and json")
    p.add_argument("--confidence-threshold", type=float, default=0.5)
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    setup_logger(name="resnet_det")
    cfg = load_config(args.config, args.opts)
    records = run_demo(cfg, args.weights, args.input, args.output, args.confidence_threshold)
    total = sum(len(r["detections"]) for r in records)
    print(f"{len(records)} image(s), {total} detection(s) -> {args.output}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
