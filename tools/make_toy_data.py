"""Write the toy shape datasets (ImageNet tree, VOC2007, COCO) used by tests and demos.

    python tools/make_toy_data.py --out datasets/toy
    python tools/make_toy_data.py --out /tmp/toy --kinds voc coco --num-det-train 20 \
        --det-size 128 160
"""
import argparse
import sys
from pathlib import Path

from resnet_det.utils.cli import run_cli, silence_known_warnings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for projects/

silence_known_warnings()  # before detectron2's imports, which warn

from projects.toy_data import KINDS, make_toy_data  # noqa: E402


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", required=True, help="output directory (its dataset folders must not exist yet)"
    )
    parser.add_argument("--seed", type=int, help="random seed (library default: 0)")
    parser.add_argument(
        "--kinds", nargs="+", choices=KINDS,
        help="what to write (library default: classification voc coco; labelimg: a user's own "
        "VOC-layout dataset as LabelImg writes it, see docs/custom_data.md)",
    )
    # Unset options fall through to make_toy_data's own defaults, so they are stated in one place.
    parser.add_argument("--num-train-per-class", type=int)
    parser.add_argument("--num-val-per-class", type=int)
    parser.add_argument("--num-det-train", type=int, help="VOC trainval and COCO train2017 images")
    parser.add_argument("--num-det-val", type=int, help="VOC test and COCO val2017 images")
    parser.add_argument("--cls-size", type=int, help="side of the square classification images")
    parser.add_argument(
        "--det-size", type=int, nargs=2, metavar=("H", "W"), help="detection image size"
    )
    args = parser.parse_args()

    options = {k: v for k, v in vars(args).items() if v is not None and k != "out"}
    try:
        written = make_toy_data(args.out, **options)
    except (FileExistsError, ValueError) as e:
        parser.error(str(e))
    for kind, info in written.items():
        print(f"{kind}:")
        for key, value in info.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
