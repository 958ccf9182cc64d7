"""Evaluate a COCO results json against a ground-truth json; prints pycocotools' 12 numbers.

Example: python tools/eval_coco.py --gt instances_val2017.json --dt coco_instances_results.json

The numbers are computed by faster-coco-eval (C++, same numbers) when it is installed, else
by pycocotools; --engine pycocotools forces the reference implementation.
"""
import argparse
import json
import os
import sys

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.evaluation import coco_engine, evaluate_coco_files  # noqa: E402


def main(argv=None):
    """Exit status of :func:`evaluate`: 0, or 2 with the message of an expected error."""
    return run_cli(evaluate, argv)


def evaluate(argv=None):
    """Parse arguments, evaluate, optionally save the stats as json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="ground-truth COCO annotation json")
    parser.add_argument("--dt", required=True, help="detections: list of {image_id, ...}")
    parser.add_argument("--iou-type", default="bbox", choices=["bbox", "segm", "keypoints"])
    parser.add_argument("--engine", default="auto", choices=["auto", "faster", "pycocotools"],
                        help="auto: faster-coco-eval when installed, else pycocotools")
    parser.add_argument("--out", help="also write the 12 stats to this json file")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    engine = coco_engine(args.engine)[2]
    stats = evaluate_coco_files(args.gt, args.dt, args.iou_type, engine=args.engine)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump({"iou_type": args.iou_type, "gt": args.gt, "dt": args.dt, "engine": engine,
                       **stats}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
