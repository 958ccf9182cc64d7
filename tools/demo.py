#!/usr/bin/env python
"""Draw a trained detector's detections on an image or a folder of images.

    python tools/demo.py --config configs/toy/faster_rcnn_r18_c4_coco.yaml \\
        --weights output/toy_r18_c4_coco/model_final.pth --input datasets/toy/coco/val2017 \\
        --output output/demo [--confidence-threshold 0.5] [--max-size 1600] [KEY VALUE ...]
    python tools/demo.py --onnx output/onnx_r18_c4/model.onnx --input IMAGES --output OUT \\
        [--runtime onnxruntime|openvino] [--precision fp32|bf16|int8] [--threads N]

Writes one PNG per image (boxes, class names, scores; at most --max-size pixels long) and
detections.json to --output. An unreadable image is skipped with a warning naming it and the
others go on; detections.json holds what was done. Exit status: 0; 1 when some images could not
be read; 2 for a bad model, config or input path. With --onnx the model exported by
tools/export_model.py runs without torch (the serving install's `resnet-det-detect`).
"""
import argparse
import logging
import sys

from resnet_det.deploy.detect import add_detect_arguments, add_runtime_arguments, detect_folder, report
from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn (torch-free itself)


def main(argv=None):
    """Exit status of :func:`demo`."""
    return run_cli(demo, argv)


def demo(argv=None):
    """Parse arguments, run the PyTorch or the ONNX detector over the input, print a summary."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "--config-file", dest="config", help="detector yaml")
    p.add_argument("--weights", help="detector checkpoint (.pth/.safetensors)")
    p.add_argument("--onnx", help="model.onnx from tools/export_model.py (instead of --config/--weights)")
    add_detect_arguments(p)
    add_runtime_arguments(p)  # with --onnx
    add_debug_argument(p)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = p.parse_args(argv)
    if args.onnx:
        if args.config or args.weights or args.opts:
            p.error("--onnx runs the exported model: --config, --weights and overrides do not apply")
        from resnet_det.deploy import OnnxDetector

        logging.basicConfig(level=logging.INFO, format="%(message)s")
        detector = OnnxDetector(args.onnx, runtime=args.runtime, precision=args.precision, threads=args.threads,
                                max_pixels=args.max_pixels)
    else:
        if not (args.config and args.weights):
            p.error("--config and --weights are required (or --onnx FILE)")
        from detectron2.utils.logger import setup_logger

        from resnet_det.config import load_config
        from resnet_det.engine.predictor import Predictor

        setup_logger(name="resnet_det")
        cfg = load_config(args.config, ["DATASETS.MAX_IMAGE_PIXELS", str(args.max_pixels), *args.opts])
        detector = Predictor(cfg, args.weights, args.confidence_threshold)
    records, failures = detect_folder(detector, args.input, args.output, score_threshold=args.confidence_threshold,
                                      max_side=args.max_size)
    return report(records, failures, args.output)


if __name__ == "__main__":
    sys.exit(main())
