"""Pictures and a report of where a detector fails: AP per class, PR curves, the COCO error
breakdown, a confusion matrix, the images with the most false positives and misses.

    python tools/analyze_results.py --gt instances_val2017.json --dt coco_instances_results.json \\
        --image-root datasets/coco/val2017 --output output/analysis
    python tools/analyze_results.py --run output/toy_r18_fpn_coco --output output/analysis

--run reads a train_det OUTPUT_DIR: its inference/<dataset>/coco_instances_results.json (COCO
and VOC test sets; VOC ground truth is converted to COCO in memory) and config.yaml (the
datasets, found as train_det finds them). Writes PNGs and report.md to --output.
"""
import argparse
import sys
from pathlib import Path

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/


def main(argv=None):
    """Exit status of :func:`analyze`: 0, or 2 with the message of an expected error."""
    return run_cli(analyze, argv)


def analyze(argv=None):
    """Parse arguments, run the analysis, print where the report is."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--gt", help="ground-truth COCO annotation json (with --dt)")
    source.add_argument("--run", metavar="OUTPUT_DIR", help="a train_det output folder")
    parser.add_argument("--dt", help="detections json: [{image_id, category_id, bbox, score}]")
    parser.add_argument("--image-root", help="folder of the --gt images (to draw the worst ones)")
    parser.add_argument("--output", required=True, help="folder for the PNGs and report.md")
    parser.add_argument("--score-thresh", type=float, default=0.5,
                        help="confusion matrix and drawn images: detections at least this score")
    parser.add_argument("--iou-thresh", type=float, default=0.5, help="matching IoU of the same")
    parser.add_argument("--num-images", type=int, default=4, help="images drawn per picture")
    parser.add_argument("--engine", default="auto", choices=["auto", "faster", "pycocotools"])
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.gt and not args.dt:
        parser.error("--gt needs --dt")
    from projects.analysis.results import AP_DEFINITION, analyze_run, write_analysis

    options = dict(score_thresh=args.score_thresh, iou_thresh=args.iou_thresh,
                   num_images=args.num_images, engine=args.engine)
    if args.run:
        analyze_run(args.run, args.output, **options)
    else:
        write_analysis(args.gt, args.dt, args.output, image_root=args.image_root, **options)
    print(f"wrote {args.output}/report.md; AP there is {AP_DEFINITION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
