#!/usr/bin/env python
"""Draw the ground-truth boxes and class names of the datasets a detector config trains on,
to check the annotations before training (one colour per class).

    python tools/browse_dataset.py --config FILE [--split train|test] [--augment] \\
        --output DIR [--num N] [KEY VALUE ...]
    python tools/browse_dataset.py --config FILE [--split train|test] --crops [--background N] --output DIR

--crops writes each ground-truth box (plus 10% context) as DIR/<class>/<image>_<k>.png
instead: an ImageNet-layout folder for classification pretraining on the same images
(tools/pretrain_cls.py, docs/custom_data.md); --background N adds up to N crops per image
that overlap no object, in DIR/background/ (a one-class dataset then has the two classes
pretraining needs).

--split train draws DATASETS.TRAIN (default), test DATASETS.TEST; --augment draws what the
training loader produces (resized to INPUT.MIN_SIZE_TRAIN, random flips) instead of the
files as stored. Writes DIR/<dataset>/<image>.png and prints the boxes drawn per class.
KEY VALUE overrides work as in tools/train_det.py, e.g. your own VOC-layout folder:

    python tools/browse_dataset.py --config configs/toy/faster_rcnn_r18_c4_voc.yaml \\
        --output output/browse --num 20 \\
        DATASETS.VOC_REGISTER "[['mine_trainval', 'data/mine', 'trainval', ['cat', 'dog']]]" \\
        DATASETS.TRAIN "('mine_trainval',)" MODEL.ROI_HEADS.NUM_CLASSES 2
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from detectron2.utils.logger import setup_logger  # noqa: E402

from projects.browse import browse_dataset, export_crops  # noqa: E402
from resnet_det.config import load_config  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", "--config-file", dest="config", required=True, help="detector yaml")
    parser.add_argument("--split", choices=("train", "test"), default="train",
                        help="draw DATASETS.TRAIN (train) or DATASETS.TEST (test)")
    parser.add_argument("--augment", action="store_true", help="after the training augmentation")
    parser.add_argument("--crops", action="store_true",
                        help="write the boxes as DIR/<class>/ crops instead of drawing them")
    parser.add_argument("--background", type=int, default=0, metavar="N",
                        help="with --crops: up to N crops per image that hold no object (class 'background')")
    parser.add_argument("--output", required=True, help="directory for the drawn images or crops")
    parser.add_argument("--num", type=int, help="draw at most this many images")
    add_debug_argument(parser)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    args = parser.parse_args(argv)
    setup_logger(name="resnet_det")
    cfg = load_config(args.config, args.opts)
    if args.background and not args.crops:
        parser.error("--background goes with --crops")
    if args.background < 0:
        parser.error(f"--background must be >= 0, got {args.background}")
    if args.crops:
        counts = export_crops(cfg, args.output, args.split, num=args.num, background=args.background,
                              seed=cfg.SEED if cfg.SEED >= 0 else 0)
        listed = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
        print(f"{sum(counts.values())} crop(s) written to {args.output}; per class: {listed or 'none'}")
        return
    result = browse_dataset(cfg, args.output, args.split, args.augment, args.num)
    counts = ", ".join(f"{k}: {v}" for k, v in sorted(result["boxes_per_class"].items()))
    print(f"{len(result['images'])} image(s) drawn to {args.output}; boxes per class: {counts or 'none'}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
