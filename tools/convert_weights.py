"""Convert pickled weights (.pkl of detectron2's model zoo, Detectron/Caffe2 and MSRA ImageNet
models; or a torch file that needs full unpickling) into a .safetensors file that
MODEL.WEIGHTS reads without running any code.

    python tools/convert_weights.py --allow-pickle R-101.pkl R-101.safetensors
    python tools/train_det.py --config configs/faster_rcnn_r101_coco.yaml \\
        MODEL.WEIGHTS R-101.safetensors INPUT.FORMAT BGR \\
        MODEL.PIXEL_MEAN "[103.53, 116.28, 123.675]" MODEL.PIXEL_STD "[1.0, 1.0, 1.0]"

Unpickling EXECUTES CODE contained in the file. This tool does it only with --allow-pickle,
once, for a file whose origin you trust; the output holds tensors and metadata only.
ImageNet backbones become backbone files that record the architecture and the input
normalisation their origin implies (MSRA/Caffe2: BGR, mean subtraction only, stride in the
1x1; torchvision: RGB with its mean/std); the detector checks them against its config.
"""
import argparse
import json
import sys

from resnet_det.utils.cli import add_debug_argument, run_cli, silence_known_warnings

silence_known_warnings()  # before detectron2's imports, which warn

from resnet_det.checkpoint.detection import convert_pickle_weights  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("src", help="pickled weights (.pkl, or .pth/.pt needing full unpickling)")
    parser.add_argument("dst", help="output .safetensors file")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="required: confirm that SRC is trusted, since unpickling runs code from it",
    )
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not args.allow_pickle:
        parser.error(
            f"refusing to unpickle {args.src}: unpickling executes code contained in the file. "
            "If you trust its origin, run again with --allow-pickle."
        )
    print(
        f"WARNING: unpickling {args.src} executes any code it contains; continue only if you "
        "trust its origin.",
        file=sys.stderr,
    )
    try:
        meta = convert_pickle_weights(args.src, args.dst)
    except (OSError, ValueError) as e:
        parser.error(str(e))
    print(f"wrote {args.dst}")
    print(json.dumps(meta, indent=2, sort_keys=True))


if __name__ == "__main__":
    sys.exit(run_cli(main))
